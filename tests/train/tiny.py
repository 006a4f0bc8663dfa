"""Tiny tasks for the engine's tests, and a runnable example of a model's `train` command.

    python -m tests.train.tiny --out runs/tiny --max-steps 50
    torchrun --standalone --nproc_per_node=2 -m tests.train.tiny --out runs/tiny2 --max-steps 50
    python -m tests.train.tiny --out runs/tiny --resume --max-steps 100

`TinyRegression`: an MLP fitting a random linear map (dropout and input noise exercise the RNG
state). `TinyGAN`: a generator and a discriminator with their own optimizers, the discriminator
starting after a warm-up, as the codec does.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from segue.config import apply_overrides
from segue.train import (
    OptimizerSpec,
    Phase,
    RunConfig,
    Trainer,
    TrainTask,
    add_training_arguments,
    config_from_args,
    run_training,
)


@dataclass
class TinyModelConfig:
    kind: str = "regression"  # or "gan"
    dim: int = 4
    hidden: int = 16
    dropout: float = 0.0
    noise: float = 0.0  # input noise drawn from torch's global RNG in __getitem__
    n_train: int = 64
    n_valid: int = 16
    disc_start: int = 3
    nan_steps: list[int] = field(default_factory=list)  # steps whose loss is NaN
    nan_rank: int | None = None  # only this rank's loss is NaN (None: every rank)
    stop_at: int | None = None  # send ourselves SIGTERM during this step
    stop_rank: int | None = None  # only this rank is signalled (None: every rank)
    fail_item: int | None = None  # reading this training item raises (a broken file)


@dataclass
class TinyRunConfig(RunConfig):
    model: TinyModelConfig = field(default_factory=TinyModelConfig)


class MLP(nn.Module):
    """[B, dim] -> [B, out]; layers in a ModuleList (FSDP shards each)."""

    def __init__(self, dim: int, hidden: int, out: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(dim, hidden), nn.Linear(hidden, out)])
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[1](self.dropout(torch.tanh(self.layers[0](x))))


class RegressionData(Dataset):
    """Item i: (x [dim], y [1]) with y = x @ w; x gets fresh N(0, noise^2) each time."""

    def __init__(
        self, n: int, dim: int, seed: int, noise: float = 0.0, fail_item: int | None = None
    ) -> None:
        self.fail_item = fail_item
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=generator)
        w = torch.randn(dim, 1, generator=torch.Generator().manual_seed(1234))
        self.y = self.x @ w
        self.noise = noise

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index == self.fail_item:
            raise OSError(f"item {index}: cannot read it")
        x = self.x[index]
        if self.noise:
            x = x + self.noise * torch.randn(x.shape)
        return x, self.y[index]


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


class _Base(TrainTask):
    def __init__(self, cfg: TinyModelConfig) -> None:
        self.cfg = cfg
        self._stopped = False

    def train_dataset(self) -> Dataset:
        cfg = self.cfg
        return RegressionData(cfg.n_train, cfg.dim, seed=0, noise=cfg.noise,
                              fail_item=cfg.fail_item)

    def valid_dataset(self) -> Dataset | None:
        return RegressionData(self.cfg.n_valid, self.cfg.dim, seed=1) if self.cfg.n_valid else None

    def _hooks(self, loss: torch.Tensor, step: int) -> torch.Tensor:
        cfg = self.cfg
        if cfg.stop_at == step and not self._stopped and cfg.stop_rank in (None, _rank()):
            self._stopped = True
            os.kill(os.getpid(), signal.SIGTERM)
        if step in cfg.nan_steps and cfg.nan_rank in (None, _rank()):
            loss = loss * float("nan")
        return loss


class TinyRegression(_Base):
    def setup(self, device: torch.device) -> None:
        self.model = MLP(self.cfg.dim, self.cfg.hidden, dropout=self.cfg.dropout)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def train_step(self, models, batch, step):
        x, y = batch
        pred = models["model"](x)
        loss = F.mse_loss(pred, y)
        return Phase("main", self._hooks(loss, step), {"mae": (pred - y).abs().mean()})

    def valid_step(self, models, batch):
        x, y = batch
        return {"mse": F.mse_loss(models["model"](x), y).item()}

    def log_media(self, models, logger, step):
        t = torch.arange(1600) / 16000
        logger.audio("valid/tone", 0.5 * torch.sin(2 * math.pi * 440 * t), 16000, step)


class TinyGAN(_Base):
    """G: x -> y_hat, trained by L1 + adversarial loss; D: (x, y) -> realness logit."""

    def setup(self, device: torch.device) -> None:
        self.generator = MLP(self.cfg.dim, self.cfg.hidden)
        self.discriminator = MLP(self.cfg.dim + 1, self.cfg.hidden)

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, OptimizerSpec]:
        return {
            "generator": OptimizerSpec(("generator",)),
            "discriminator": OptimizerSpec(
                ("discriminator",), {"lr": 5e-3, "warmup_steps": 0}, start_step=self.cfg.disc_start
            ),
        }

    def train_step(self, models, batch, step):
        x, y = batch
        fake = models["generator"](x)
        disc = models["discriminator"]
        adversarial = self.optimizer_active("discriminator", step)
        if adversarial:
            real_logit = disc(torch.cat([x, y], 1))
            fake_logit = disc(torch.cat([x, fake.detach()], 1))
            d_loss = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
            yield Phase("discriminator", d_loss)
        l1 = (fake - y).abs().mean()
        g_loss = l1
        if adversarial:
            g_loss = g_loss + 0.1 * F.softplus(-disc(torch.cat([x, fake], 1))).mean()
        yield Phase("generator", self._hooks(g_loss, step), {"l1": l1})

    def valid_step(self, models, batch):
        x, y = batch
        return {"l1": (models["generator"](x) - y).abs().mean().item()}


def make_task(cfg: TinyModelConfig) -> TrainTask:
    return {"regression": TinyRegression, "gan": TinyGAN}[cfg.kind](cfg)


# ---------------------------------------------------------------- test helpers
BASE = [
    "optim.max_steps=8",
    "optim.warmup_steps=2",
    "optim.lr=1e-2",
    "optim.weight_decay=0.01",
    "train.batch_size=8",
    "train.num_workers=0",
    "train.log_every=4",
    "train.valid_every=4",
    "train.checkpoint_every=100",
    "train.progress=false",
    "train.tensorboard=false",
]


def tiny_config(*overrides: str) -> TinyRunConfig:
    return apply_overrides(TinyRunConfig(), [*BASE, *overrides])


def train(config: TinyRunConfig, out: str | os.PathLike, *, resume: bool = False) -> Trainer:
    """Build a trainer for `config` in `out` and run it; returns the trainer (status set)."""
    trainer = Trainer(make_task(config.model), config, out, resume=resume)
    trainer.fit()
    return trainer


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Every module's state, prefixed by module name."""
    return {
        f"{name}.{key}": value.detach().clone()
        for name, module in trainer.raw_modules.items()
        for key, value in module.state_dict().items()
    }


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs: max {(a[key] - b[key]).abs().max()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="train a tiny test model")
    add_training_arguments(parser)
    args = parser.parse_args(argv)
    config = config_from_args(TinyRunConfig, args)
    try:
        return run_training(make_task(config.model), config, args)
    except KeyboardInterrupt:  # as `segue`'s command line: stopped with a checkpoint
        return 130


if __name__ == "__main__":
    sys.exit(main())
