"""Decoding sessions: the KV cache of a batch of sequences and the step that extends it.

`DecodeSession(model, batch, max_len)` owns the keys and values of every layer,
kv [layers, 2, B, kv_heads, max_len, hd], how many positions are filled, and a step backend:

- `TorchStep`: `segue.nn.Block.step` per layer on weight views made once per session (any
  device, dtype and batch; also under autograd);
- `segue.lm.fused.FusedStep`: the whole step in one C call (CPU, float32, batch <=
  `MAX_BATCH`), the same logits to float32 rounding, several times faster there.

`Transformer.extend` drives a session: a prompt (T > 1) goes through the blocks' forward with
the cache; single tokens go through the backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F

from segue.errors import InputError
from segue.lm.fused import MAX_BATCH, FusedStep, library

if TYPE_CHECKING:
    from segue.lm.model import Transformer


class StepBackend(Protocol):
    def step(self, ids: torch.Tensor, pos: int, lo: int, hi: int) -> torch.Tensor:
        """ids [B, 1] enter at position `pos` (their keys and values written there) -> logits
        [B, hi - lo] of the vocabulary's ids lo..hi at that position."""
        ...


class TorchStep:
    """One position through the blocks' `step` (a dozen PyTorch kernels per layer)."""

    def __init__(self, session: DecodeSession):
        model = session.model
        self.model, self.session = model, session
        self.weights = [block.step_weights() for block in model.blocks]  # views, made once
        self.head = model.head.weight.t()  # [D, V]

    def step(self, ids: torch.Tensor, pos: int, lo: int, hi: int) -> torch.Tensor:
        model, session = self.model, self.session
        x = F.embedding(ids[:, 0], model.embed.weight)  # [B, D]
        cos, sin, swap = session.rope
        rope = (cos[pos], sin[pos], swap)
        for block, weights, kv in zip(model.blocks, self.weights, session.layers):
            x = block.step(x, weights, rope, kv, pos)
        h = F.layer_norm(x, (x.shape[-1],), model.norm.weight)
        return torch.mm(h, self.head[:, lo:hi])  # [B, hi - lo]


class DecodeSession:
    """The decoding state of `batch` sequences of up to `max_len` positions (default the model's
    max_seq_len) of `model`; `length` positions are filled.

    fused: single-token steps of a CPU float32 session of at most `MAX_BATCH` sequences go
    through the C step when it is available (`backend` says which one a session got). The
    weight views and the rotary table are made once here, not at every step: valid while the
    model's parameters are the same tensors.
    """

    def __init__(
        self,
        model: Transformer,
        batch: int,
        max_len: int | None = None,
        dtype: torch.dtype | None = None,
        *,
        fused: bool = True,
    ):
        c, weight = model.config, model.head.weight
        max_len = max_len or c.max_seq_len
        if batch < 1:
            raise InputError(f"a decoding session needs a batch of at least 1, got {batch}")
        if max_len > c.max_seq_len:
            raise InputError(f"max_len {max_len} is past max_seq_len={c.max_seq_len}")
        self.model = model
        dtype = dtype or weight.dtype
        self.kv = torch.zeros(
            c.n_layer, 2, batch, c.kv_heads, max_len, c.head_dim, dtype=dtype, device=weight.device
        )
        self.layers = list(self.kv.unbind(0))  # per layer [2, B, kv_heads, max_len, hd]
        self.length = 0
        self.rope = model.step_rope(dtype)  # cos, sin [max_seq_len, (H + 2G) hd], swap
        self.torch_step = TorchStep(self)
        self.backend: StepBackend = self.torch_step
        if fused and self._fusable():
            lib = library()
            if lib is not None:
                self.backend = FusedStep(lib, model.fused_weights(), self)

    def _fusable(self) -> bool:
        weight = self.model.head.weight
        return (
            self.batch <= MAX_BATCH
            and weight.device.type == "cpu"
            and self.kv.dtype == weight.dtype == torch.float32
        )

    @property
    def batch(self) -> int:
        return self.kv.shape[2]

    @property
    def max_len(self) -> int:
        return self.kv.shape[4]

    @property
    def fused(self) -> bool:
        """Whether single-token steps go through the C step."""
        return isinstance(self.backend, FusedStep)

    def reset(self) -> None:
        self.length = 0

    def step(self, ids: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """ids [B, 1] at position `length` -> logits [B, hi - lo]; advances `length`. Under
        autograd the PyTorch step runs (the C step has no backward)."""
        if self.length >= self.max_len:
            raise InputError(f"cache of {self.max_len} positions cannot take {self.length + 1}")
        backend = self.torch_step if torch.is_grad_enabled() else self.backend
        logits = backend.step(ids, self.length, lo, hi)
        self.length += 1
        return logits
