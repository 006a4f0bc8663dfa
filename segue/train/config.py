"""Training configs: optimisation, the run loop, and the `RunConfig` every model's config extends.

A model's run config subclasses `RunConfig` and adds its own sections, e.g.

    @dataclass
    class LMRunConfig(RunConfig):
        model: LMConfig = field(default_factory=LMConfig)
        data: LMDataConfig = field(default_factory=LMDataConfig)

so that `--set optim.lr=3e-4`, `--set train.distributed=fsdp` and `--set model.n_layer=4` all work
through `segue.config.apply_overrides`, and the whole run is saved with every checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from segue.errors import InputError

Precision = Literal["fp32", "bf16", "auto", "bf16-native"]
Distributed = Literal["ddp", "fsdp", "none"]


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to `min_lr_ratio * lr` at `max_steps`."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1  # on matrices only; biases, norms and embeddings' 1-d params: none
    warmup_steps: int = 1000
    max_steps: int = 100_000  # also the length of the run
    min_lr_ratio: float = 0.1
    grad_clip: float | None = 1.0  # max global grad norm per optimizer; None: no clipping
    grad_accum: int = 1  # micro-batches per optimizer step

    def __post_init__(self) -> None:
        problems = []
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not all(0 <= b < 1 for b in self.betas):
            problems.append(f"betas must be in [0, 1), got {self.betas}")
        if not self.eps > 0:
            problems.append(f"eps must be > 0, got {self.eps}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.warmup_steps < 0:
            problems.append(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.max_steps < 0:
            problems.append(f"max_steps must be >= 0, got {self.max_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            problems.append(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            problems.append(f"grad_clip must be > 0 (or null: no clipping), got {self.grad_clip}")
        if self.grad_accum < 1:
            problems.append(f"grad_accum must be >= 1, got {self.grad_accum}")
        if problems:
            raise InputError("optim: " + "; ".join(problems))


@dataclass
class TrainConfig:
    """The training loop: data, precision, parallelism, EMA, checkpoints, logging, fault limits.

    `batch_size` is per process and per micro-batch: one optimizer step sees
    batch_size * optim.grad_accum * world_size examples.
    """

    seed: int = 0
    batch_size: int = 16
    num_workers: int = 2
    device: str = "auto"  # "auto": cuda:LOCAL_RANK when CUDA is available, else cpu
    # "auto": bf16 autocast on CUDA with bf16 support, else fp32; "bf16-native": also on a CPU
    # with native bf16 (AVX512-BF16, AMX), else fp32; "bf16": always (emulated where not native)
    precision: Precision = "auto"
    distributed: Distributed = "ddp"  # used only under torchrun with WORLD_SIZE > 1
    find_unused_parameters: bool = False  # DDP option, for models with conditional branches
    ema_decay: float | None = None  # e.g. 0.999; None: no EMA
    valid_with_ema: bool = True  # validate (and log media) with the EMA weights when EMA is on
    checkpoint_every: int = 1000
    keep_last: int = 3
    log_every: int = 50
    valid_every: int = 1000
    valid_batches: int | None = None  # per process; None: the whole validation set
    max_nan_steps: int = 20  # stop after this many consecutive steps with non-finite loss/grads
    progress: bool = True  # tqdm bar on rank 0
    tensorboard: bool = True  # event files under RUN/tensorboard on rank 0
    # fine-tuning: trained weights to start from (a saved model, a bundle's stage folder or a
    # run folder; the task reads it, `TrainTask.load_initial`); None: the task's own init
    init_from: str | None = None


@dataclass
class RunConfig:
    """Base of every run config: `optim` and `train` sections, extended by each model."""

    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
