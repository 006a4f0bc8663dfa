"""Construction of the `Trainer`: settings checked, modules wrapped, one AdamW per optimizer.

`check_settings` and `check_specs` refuse a config or a task's optimizers that cannot run, before
anything is built; `wrap_modules` wraps the trained modules for DDP or FSDP (left bare in one
process); `build_optimizers` gives each optimizer its AdamW, schedule and the parameter names its
checkpoint uses.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import nn

from segue.errors import InputError
from segue.train import checkpoint as ckpt
from segue.train.config import OptimConfig
from segue.train.distributed import shard_fsdp, wrap_ddp
from segue.train.optim import build_adamw
from segue.train.schedule import build_scheduler

if TYPE_CHECKING:
    from segue.train.engine import Trainer

FIXED_OPTIM_FIELDS = ("max_steps", "grad_accum")  # run-wide, not per optimizer


def check_settings(trainer: Trainer) -> None:
    """Refuse train/optim settings the loop cannot run with."""
    tc, oc = trainer.train_cfg, trainer.optim_cfg
    if tc.distributed == "none" and trainer.dist.is_distributed:
        raise InputError(
            "train.distributed=none under torchrun with several processes: use ddp or fsdp"
        )
    if oc.grad_accum < 1 or tc.batch_size < 1 or oc.max_steps < 0:
        raise InputError("grad_accum and batch_size must be >= 1, max_steps >= 0")
    if tc.max_nan_steps < 1:
        raise InputError("train.max_nan_steps must be >= 1")
    for name in ("checkpoint_every", "log_every", "valid_every", "keep_last"):
        if getattr(tc, name) < 1:
            raise InputError(f"train.{name} must be >= 1")


def check_specs(trainer: Trainer) -> dict[str, str]:
    """Check the task's optimizers against its modules; {module: its optimizer}."""
    if not trainer.specs:
        raise InputError("task.optimizers() declared no optimizer")
    owner: dict[str, str] = {}
    for opt_name, spec in trainer.specs.items():
        for module_name in spec.modules:
            if module_name not in trainer.raw_modules:
                raise InputError(
                    f"optimizer {opt_name!r} names module {module_name!r}; "
                    f"modules: {sorted(trainer.raw_modules)}"
                )
            if module_name in owner:
                raise InputError(
                    f"module {module_name!r} is in optimizers {owner[module_name]!r} "
                    f"and {opt_name!r}"
                )
            owner[module_name] = opt_name
        bad = sorted(set(spec.overrides) - {f.name for f in dataclasses.fields(OptimConfig)})
        fixed = sorted(set(spec.overrides) & set(FIXED_OPTIM_FIELDS))
        if bad or fixed:
            raise InputError(f"optimizer {opt_name!r}: cannot override {bad + fixed}")
    if trainer.mode == "fsdp" and len(trainer.specs) > 1 and trainer.optim_cfg.grad_accum > 1:
        raise InputError(
            "FSDP with several optimizers does not support grad_accum > 1 "
            "(use ddp, or grad_accum=1)"
        )
    return owner


def check_run_folder(trainer: Trainer, resume: bool) -> None:
    """A fresh start must not overwrite a run that has checkpoints."""
    if not resume and ckpt.list_checkpoints(trainer.checkpoint_dir):
        raise FileExistsError(
            f"{trainer.out_dir} already holds checkpoints: pass --resume to continue that run, "
            "or choose another --out"
        )


def wrap_modules(trainer: Trainer) -> dict[str, nn.Module]:
    """The modules as the step calls them: trained ones wrapped for DDP or FSDP, others bare."""
    models = {}
    for name, module in trainer.raw_modules.items():
        trainable = any(p.requires_grad for p in module.parameters())
        if name not in trainer._trained or not trainable or trainer.mode == "none":
            models[name] = module
        elif trainer.mode == "ddp":
            models[name] = wrap_ddp(
                module,
                trainer.device,
                find_unused_parameters=trainer.train_cfg.find_unused_parameters,
            )
        else:
            models[name] = shard_fsdp(module, trainer.task.fsdp_units(name, module))
    return models


def build_optimizers(trainer: Trainer) -> None:
    """Per optimizer: AdamW over its modules (config overridden by its spec), its schedule, the
    container that names its parameters in checkpoints, and which groups decay."""
    trainer.optimizers: dict[str, torch.optim.Optimizer] = {}
    trainer.schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
    trainer.optim_cfgs: dict[str, OptimConfig] = {}
    trainer._params: dict[str, list[nn.Parameter]] = {}
    # per optimizer: its modules in one container (the parameter names of its checkpoint)
    # and which of its parameter groups decay (how the config's weight decay applies)
    trainer.param_containers: dict[str, nn.Module] = {}
    trainer.decay_groups: dict[str, list[bool]] = {}
    for name, spec in trainer.specs.items():
        cfg = dataclasses.replace(trainer.optim_cfg, **spec.overrides)
        modules = [trainer.raw_modules[m] for m in spec.modules]
        optimizer, trainer._params[name], trainer.decay_groups[name] = build_adamw(
            name, cfg, modules
        )
        trainer.optimizers[name] = optimizer
        trainer.schedulers[name] = build_scheduler(
            optimizer, cfg.warmup_steps, trainer.schedule_horizon(name), cfg.min_lr_ratio
        )
        trainer.optim_cfgs[name] = cfg
        container = nn.ModuleDict({m: trainer.raw_modules[m] for m in spec.modules})
        trainer.param_containers[name] = container
    # per optimizer: every other optimizer's parameters (whose gradients its backward keeps)
    trainer._others = {
        name: [p for other, ps in trainer._params.items() if other != name for p in ps]
        for name in trainer._params
    }
