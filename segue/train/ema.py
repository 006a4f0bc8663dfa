"""Exponential moving average of model weights: shadow = decay * shadow + (1 - decay) * weight."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from segue.errors import InputError
from segue.train.distributed import copy_full_into


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor shard (FSDP) gathered to the full tensor; a plain tensor unchanged."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


class EMA:
    """EMA of the trainable parameters of named modules (buffers are taken as they are).

    Works on plain, DDP-shared and FSDP-sharded parameters (the shadow has the parameter's
    layout). `state_dict(name)` is a full state dict loadable into the bare module.
    """

    def __init__(self, modules: dict[str, nn.Module], decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise InputError(f"EMA decay must be in [0, 1), got {decay}")
        self.modules = modules
        self.decay = decay
        self.num_updates = 0
        self.shadow: dict[str, dict[str, torch.Tensor]] = {
            name: {
                key: p.detach().clone() for key, p in module.named_parameters() if p.requires_grad
            }
            for name, module in modules.items()
        }

    def _pairs(self, name: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        params = dict(self.modules[name].named_parameters())
        for key, shadow in self.shadow[name].items():
            yield shadow, params[key]

    @torch.no_grad()
    def update(self) -> None:
        """One EMA step towards the current weights."""
        for name in self.shadow:
            for shadow, param in self._pairs(name):
                shadow.lerp_(param.detach(), 1.0 - self.decay)
        self.num_updates += 1

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Temporarily put the EMA weights into the modules (e.g. for validation)."""
        saved = []
        with torch.no_grad():
            for name in self.shadow:
                for shadow, param in self._pairs(name):
                    saved.append((param, param.detach().clone()))
                    param.copy_(shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, value in saved:
                    param.copy_(value)

    def state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """Full state dict of module `name` with EMA parameters (collective under FSDP)."""
        by_id = {
            id(p): self.shadow[name][key]
            for key, p in self.modules[name].named_parameters()
            if key in self.shadow[name]
        }
        out = {}
        for key, value in self.modules[name].state_dict(keep_vars=True).items():
            tensor = by_id.get(id(value), value)
            out[key] = _full(tensor.detach()).cpu()
        return out

    @torch.no_grad()
    def load_state_dict(self, name: str, state: dict[str, torch.Tensor]) -> None:
        """Set the shadow of module `name` from a full state dict (as `state_dict` returns)."""
        for key, shadow in self.shadow[name].items():
            copy_full_into(shadow, state[key])
