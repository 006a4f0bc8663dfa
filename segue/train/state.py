"""What a checkpoint holds for the Trainer, and how it is put back.

`checkpoint_contents(trainer)` gathers the weights of every module (and their EMA) and the
objects: per optimizer, its state dict with full tensors and parameter names, and its scheduler;
the run state (step, data position, NaN counters, EMA updates, every rank's RNG states).
`restore_checkpoint(trainer, checkpoint)` puts them back on every rank (FSDP shards re-cut
locally), with lr, betas, eps, weight decay and schedule taken from the current config.
`find_resume_checkpoint` picks the checkpoint to resume from, the same on every rank.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from segue.config import config_differences, from_dict, to_dict
from segue.nn import upgrade_keys, upgrade_state_dict
from segue.train import checkpoint as ckpt
from segue.train.distributed import (
    DistInfo,
    broadcast_object,
    full_state_dict,
    gather_objects,
    load_full_state_dict,
)
from segue.train.optim import apply_hyperparameters, load_optimizer_state, optimizer_state
from segue.train.seed import RANK_SEED_STRIDE, get_rng_state, seed_everything, set_rng_state

if TYPE_CHECKING:
    from segue.train.engine import Trainer


def checkpoint_contents(trainer: Trainer) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """(weights, objects) to checkpoint `trainer`'s current step, for rank 0 to write.

    Every rank calls (FSDP shards and the RNG states of all ranks are gathered); weights and
    optimizer states are left empty on the ranks that need not gather them.
    """
    weights: dict[str, dict[str, torch.Tensor]] = {}
    optim: dict[str, Any] = {}
    if trainer.dist.is_main or trainer.mode == "fsdp":  # FSDP gathers shards: all take part
        weights = {name: full_state_dict(m) for name, m in trainer.raw_modules.items()}
        if trainer.ema is not None:
            for name in trainer.ema.shadow:
                weights[f"{name}.ema"] = trainer.ema.state_dict(name)
        optim = {
            name: {
                "optimizer": optimizer_state(optimizer, trainer.param_containers[name]),
                "scheduler": trainer.schedulers[name].state_dict(),
            }
            for name, optimizer in trainer.optimizers.items()
        }
    batches = trainer.batches
    samples = batches.batch_in_epoch * trainer.train_cfg.batch_size * trainer.dist.world_size
    state = {
        "step": trainer.step,
        "epoch": batches.epoch,
        "batch_in_epoch": batches.batch_in_epoch,
        "samples_in_epoch": samples,
        "world_size": trainer.dist.world_size,
        "nan_total": trainer.nan_total,
        "nan_consecutive": trainer.nan_consecutive,
        "ema_updates": trainer.ema.num_updates if trainer.ema is not None else 0,
        "rng": gather_objects(get_rng_state()),
    }
    return weights, {"optim": optim, "state": state}


def restore_checkpoint(trainer: Trainer, checkpoint: ckpt.Checkpoint) -> None:
    """Load weights, optimizers, schedules, EMA, data position, counters and RNG into `trainer`.

    Every rank calls. RNG states are restored only when the checkpoint was written by as many
    processes as this run has; otherwise the streams are reseeded (with a warning).
    """
    for name, module in trainer.raw_modules.items():
        if name not in checkpoint.weights:
            raise ckpt.CheckpointError(f"{checkpoint.path}: no weights for module {name!r}")
        for key in (name, f"{name}.ema"):  # names saved before the blocks were segue.nn Blocks
            if key in checkpoint.weights:
                checkpoint.weights[key] = upgrade_state_dict(module, checkpoint.weights[key])
        try:
            load_full_state_dict(module, checkpoint.weights[name])
        except (KeyError, ValueError) as error:
            raise ckpt.CheckpointError(
                f"{checkpoint.path}: weights of {name!r} do not fit the model "
                f"(changed model config?): {error}"
            ) from error
    optim = checkpoint.objects["optim"]
    for name, optimizer in trainer.optimizers.items():
        saved, container = dict(optim[name]["optimizer"]), trainer.param_containers[name]
        if "param_names" in saved:
            saved["param_names"] = upgrade_keys(container, saved["param_names"])
        load_optimizer_state(optimizer, container, saved, checkpoint.path, name)
        scheduler_state = dict(optim[name]["scheduler"])
        # The schedule's shape comes from the current config (see apply_hyperparameters).
        scheduler_state["lr_lambdas"] = [None] * len(optimizer.param_groups)
        trainer.schedulers[name].load_state_dict(scheduler_state)
        apply_hyperparameters(
            trainer.schedulers[name],
            trainer.optim_cfgs[name],
            trainer.schedule_horizon(name),
            trainer.decay_groups[name],
        )
    if trainer.ema is not None:
        for name in trainer.ema.shadow:
            key = f"{name}.ema"
            if key in checkpoint.weights:
                trainer.ema.load_state_dict(name, checkpoint.weights[key])
            else:
                warnings.warn(
                    f"{checkpoint.path} has no EMA of {name!r}: EMA restarts from the weights",
                    RuntimeWarning,
                    stacklevel=3,
                )
                trainer.ema.load_state_dict(name, checkpoint.weights[name])
    state = checkpoint.objects["state"]
    trainer.step = int(state["step"])
    per_step = trainer.train_cfg.batch_size * trainer.dist.world_size
    trainer.batches.seek(int(state["epoch"]), int(state["samples_in_epoch"]) // per_step)
    trainer.nan_total = int(state["nan_total"])
    trainer.nan_consecutive = int(state["nan_consecutive"])
    if trainer.ema is not None:
        trainer.ema.num_updates = int(state.get("ema_updates", 0))
    rng = state["rng"]
    if len(rng) == trainer.dist.world_size:
        set_rng_state(rng[trainer.dist.rank])
    else:
        warnings.warn(
            f"checkpoint was written by {len(rng)} process(es), this run has "
            f"{trainer.dist.world_size}: random streams are reseeded (resume is not exact)",
            RuntimeWarning,
            stacklevel=3,
        )
        seed_everything(
            trainer.train_cfg.seed + RANK_SEED_STRIDE * trainer.dist.rank + trainer.step
        )


def find_resume_checkpoint(checkpoint_dir: Path, info: DistInfo) -> Path | None:
    """The newest valid checkpoint in `checkpoint_dir` (rank 0 looks, every rank gets it), or
    None if there is none. Raises CheckpointError on every rank if none of them is usable."""
    found: Any = None
    if info.is_main:
        try:
            found = ckpt.find_valid_checkpoint(checkpoint_dir)
        except ckpt.CheckpointError as error:
            found = error
    found = broadcast_object(found)
    if isinstance(found, Exception):
        raise ckpt.CheckpointError(str(found))
    return None if found is None else Path(found)


def changed_since(checkpoint: Path, run_dir: Path, config: Any) -> str:
    """The model settings of `config` that differ from those `checkpoint` was made with, as
    the end of an error sentence ("" if none or unknown): why its weights do not fit."""
    saved = checkpoint / "config.json"
    if not saved.is_file():
        saved = run_dir / "config.json"
    try:
        old = json.loads(saved.read_text())
    except (OSError, ValueError):
        return ""
    with contextlib.suppress(ValueError, TypeError):  # old placeholders (0, -1) read as None
        old = to_dict(from_dict(type(config), old))
    new, prefix = to_dict(config), ""
    if "model" in old and "model" in new:  # the shapes come from the model's settings
        old, new, prefix = old["model"], new["model"], "model"
    changes = config_differences(old, new, prefix)
    if not changes:
        return ""
    return (
        f". This resume changes {'; '.join(changes[:8])}: resume with the run's own settings, "
        "or start a new run (another --out) with these"
    )
