"""AdamW per optimizer: parameter groups, state dicts by parameter name, hyperparameters.

`build_adamw` groups a set of modules' trainable parameters (weight decay on matrices only).
`optimizer_state` / `load_optimizer_state` save and load an optimizer's state as full tensors
tagged with the parameters' names (FSDP shards gathered, then re-cut locally), so a checkpoint
does not depend on the world size and refuses to load into other parameters.
`apply_hyperparameters` sets lr, betas, eps, weight decay and the schedule from a config.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segue.errors import InputError
from segue.train.checkpoint import CheckpointError
from segue.train.config import OptimConfig
from segue.train.distributed import copy_full_into, full_tensor
from segue.train.schedule import WarmupCosine


def build_adamw(
    name: str, cfg: OptimConfig, modules: Iterable[nn.Module]
) -> tuple[torch.optim.AdamW, list[nn.Parameter], list[bool]]:
    """AdamW over the trainable parameters of `modules`, weight decay on those of >= 2 dims.

    Returns (optimizer, its parameters in group order, whether each param group decays).
    Raises ValueError if there is no trainable parameter (`name` is for the message).
    """
    decay, no_decay = [], []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                (decay if p.dim() >= 2 else no_decay).append(p)
    groups, flags = [], []
    for params, is_decay in ((decay, True), (no_decay, False)):
        if params:
            groups.append({"params": params, "weight_decay": cfg.weight_decay * is_decay})
            flags.append(is_decay)
    if not groups:
        raise InputError(f"optimizer {name!r} has no trainable parameters")
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    return optimizer, decay + no_decay, flags


def param_names(optimizer: torch.optim.Optimizer, container: nn.Module) -> list[str]:
    """Names (in `container`) of `optimizer`'s parameters, in its state-dict index order."""
    by_id = {id(p): key for key, p in container.named_parameters()}
    return [by_id[id(p)] for group in optimizer.param_groups for p in group["params"]]


def optimizer_state(optimizer: torch.optim.Optimizer, container: nn.Module) -> dict[str, Any]:
    """The optimizer's state dict with full (gathered, CPU) tensors and parameter names.

    Unlike torch.distributed.checkpoint's helpers, this never initialises the state of an
    optimizer that has not stepped yet (a discriminator before its warm-up).
    """
    state = optimizer.state_dict()
    state["state"] = {
        index: {
            key: full_tensor(value).detach().cpu() if isinstance(value, torch.Tensor) else value
            for key, value in per_param.items()
        }
        for index, per_param in state["state"].items()
    }
    state["param_names"] = param_names(optimizer, container)
    return state


def load_optimizer_state(
    optimizer: torch.optim.Optimizer,
    container: nn.Module,
    state: dict[str, Any],
    where: Path,
    name: str,
) -> None:
    """Load what `optimizer_state` saved, sharding full tensors like FSDP parameters.

    Raises CheckpointError if it was saved for other parameters (names from `container`).
    """
    state = dict(state)
    saved_names = state.pop("param_names", None)
    if saved_names is not None and saved_names != param_names(optimizer, container):
        raise CheckpointError(
            f"{where}: optimizer {name!r} was saved for other parameters than this model's"
        )
    params = [p for group in optimizer.param_groups for p in group["params"]]
    per_param_states = {}
    for index, per_param in state["state"].items():
        param = params[int(index)]
        if hasattr(param, "device_mesh"):  # FSDP: shard the full tensors like the parameter
            per_param = {
                key: _like(param, value)
                if isinstance(value, torch.Tensor) and value.shape == param.shape
                else value
                for key, value in per_param.items()
            }
        per_param_states[index] = per_param
    state["state"] = per_param_states
    optimizer.load_state_dict(state)


def apply_hyperparameters(
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    cfg: OptimConfig,
    horizon: int,
    group_decay: list[bool],
) -> None:
    """Set lr/betas/eps/weight decay and the schedule from `cfg` (a resumed run may change them).

    `horizon` is the schedule's length in steps; `group_decay` says which param groups decay.
    """
    schedule = WarmupCosine(cfg.warmup_steps, horizon, cfg.min_lr_ratio)
    scheduler.lr_lambdas = [schedule] * len(scheduler.optimizer.param_groups)
    scheduler.base_lrs = [cfg.lr] * len(scheduler.optimizer.param_groups)
    lr = cfg.lr * schedule(scheduler.last_epoch)
    for group, is_decay in zip(scheduler.optimizer.param_groups, group_decay):
        group.update(
            initial_lr=cfg.lr,
            lr=lr,
            betas=tuple(cfg.betas),
            eps=cfg.eps,
            weight_decay=cfg.weight_decay if is_decay else 0.0,
        )
    scheduler._last_lr = [lr] * len(scheduler.optimizer.param_groups)


def _like(param: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """A tensor laid out like `param` (an FSDP shard) holding full tensor `full`."""
    out = torch.empty_like(param, dtype=full.dtype)
    copy_full_into(out, full)
    return out
