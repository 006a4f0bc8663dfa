"""Learning-rate schedule: linear warm-up, then cosine decay to a floor, as a `LambdaLR`."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine:
    """LR multiplier for optimizer step k (0-based).

    k < warmup:            (k + 1) / warmup
    warmup <= k < total:   min_ratio + (1 - min_ratio) * (1 + cos(pi * progress)) / 2
    k >= total:            min_ratio

    A plain object (not a lambda) so that `LambdaLR.state_dict()` saves its settings.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float) -> None:
        self.warmup_steps = max(0, int(warmup_steps))
        self.total_steps = max(1, int(total_steps))
        self.min_ratio = float(min_ratio)

    def __call__(self, k: int) -> float:
        if k < self.warmup_steps:
            return (k + 1) / self.warmup_steps
        if k >= self.total_steps:
            return self.min_ratio
        progress = (k - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float
) -> LambdaLR:
    """A `LambdaLR` whose k-th `step()` sets lr = base_lr * WarmupCosine(k)."""
    return LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min_ratio))
