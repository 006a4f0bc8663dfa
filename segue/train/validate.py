"""Validation of the `Trainer`: the task's metrics averaged over every rank's share, then media.

It runs on a forked RNG (the training streams do not move) and, when EMA is on and
`train.valid_with_ema`, with the EMA weights swapped in.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import TYPE_CHECKING

import torch

from segue.train.data import move_to_device, shutdown_workers
from segue.train.distributed import all_reduce
from segue.train.seed import fork_rng

if TYPE_CHECKING:
    from segue.train.engine import Trainer


@torch.no_grad()
def validate(trainer: Trainer) -> dict[str, float]:
    """Average `task.valid_step` metrics over the validation set (all ranks), weighted by batch
    size; log them under `valid/` and the task's media; {} without a validation set."""
    if trainer.valid_loader is None:
        return {}
    tc, models = trainer.train_cfg, trainer.models
    use_ema = trainer.ema is not None and tc.valid_with_ema
    was_training = {name: m.training for name, m in models.items()}
    sizes = [len(b) for b in trainer.valid_sampler]
    sums: dict[str, float] = defaultdict(float)
    count = 0
    with fork_rng(), trainer.ema.applied() if use_ema else contextlib.nullcontext():
        for module in models.values():
            module.eval()
        batches = iter(trainer.valid_loader)
        try:
            for index, (size, batch) in enumerate(zip(sizes, batches)):
                if tc.valid_batches is not None and index >= tc.valid_batches:
                    break
                with trainer._autocast():
                    metrics = trainer.task.valid_step(models, move_to_device(batch, trainer.device))
                for key, value in metrics.items():
                    sums[key] += float(value) * size
                count += size
            keys = sorted(sums)
            totals = torch.tensor(
                [sums[k] for k in keys] + [count], dtype=torch.float64, device=trainer.device
            )
            all_reduce(totals)
            result = {k: float(totals[i] / max(totals[-1].item(), 1)) for i, k in enumerate(keys)}
            trainer.task.log_media(models, trainer.logger, trainer.step)
        finally:
            shutdown_workers(batches)
            for name, module in models.items():
                module.train(was_training[name])
    if result:
        trainer.logger.scalars(result, trainer.step, prefix="valid")
    trainer.logger.flush()
    trainer.last_valid = result
    return result
