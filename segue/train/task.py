"""`TrainTask`: what a model package implements to be trained by the engine.

The task owns the model-specific parts (modules, data, losses); the `Trainer` does everything
else. One optimizer (an LM):

    class LMTask(TrainTask):
        def setup(self, device):
            self.model = Transformer(self.cfg.model)
        def modules(self):
            return {"model": self.model}
        def train_dataset(self):
            return TokenDataset(...)
        def train_step(self, models, batch, step):
            logits = models["model"](batch["tokens"][:, :-1])
            return cross_entropy(logits, batch["tokens"][:, 1:])

Several optimizers (a GAN codec): declare them, then `yield` one `Phase` per optimizer. The
engine runs backward for each phase as it is yielded and, on the last micro-batch, clips and
steps that optimizer before resuming the generator, so the generator phase sees a discriminator
already updated:

        def optimizers(self):
            return {
                "generator": OptimizerSpec(("generator",)),
                "discriminator": OptimizerSpec(
                    ("discriminator",), {"lr": 1e-4}, start_step=self.cfg.disc_start
                ),
            }
        def train_step(self, models, batch, step):
            fake = models["generator"](batch)
            if self.optimizer_active("discriminator", step):
                yield Phase("discriminator", d_loss(models["discriminator"], batch, fake.detach()))
            yield Phase("generator", g_loss(models["discriminator"], batch, fake), {"l1": l1})
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from segue.errors import InputError
from segue.train.distributed import default_fsdp_units

MAIN = "main"
C = TypeVar("C")
#: config fields a fine-tuning run may set apart from its saved model: they change no weight
REGULARISATION = ("dropout", "attention_dropout")


def fine_tune_config(saved: C, run: C, keep: tuple[str, ...] = REGULARISATION) -> C:
    """Fine-tuning (`train.init_from`): the saved model's config, whose shape its weights
    need, with the run's `keep` fields (those the run may change: regularisation)."""
    return dataclasses.replace(saved, **{k: getattr(run, k) for k in keep if hasattr(run, k)})


@dataclass
class OptimizerSpec:
    """One optimizer: the modules it updates, OptimConfig fields to override, its first step.

    overrides: e.g. {"lr": 1e-4, "betas": (0.5, 0.9), "warmup_steps": 0, "grad_clip": None}.
    start_step: the optimizer (and its schedule) starts at this global step; until then the task
    must not yield phases for it (the codec's discriminator warm-up).
    """

    modules: tuple[str, ...]
    overrides: dict[str, Any] = field(default_factory=dict)
    start_step: int = 0


@dataclass
class Phase:
    """A loss for one optimizer, with metrics to log (scalars, detached by the engine)."""

    optimizer: str
    loss: torch.Tensor  # [] scalar
    metrics: dict[str, torch.Tensor | float] = field(default_factory=dict)


StepOutput = torch.Tensor | Phase | Iterable[Phase]


class TrainTask:
    """Base class of the model-specific half of training. Override what you need.

    Call order: `setup(device)` (after seeding, on every rank), `modules()`, `optimizers()`,
    datasets; then `train_step` per micro-batch, `valid_step` per validation batch,
    `log_media` after each validation. `models` passed to the step methods are the modules as
    the engine wrapped them (DDP/FSDP): call them, don't keep references across steps.
    """

    def setup(self, device: torch.device) -> None:
        """Build the modules here (seeded, reproducible); move non-trained helpers to `device`."""

    def load_initial(self, source: str) -> None:
        """Fine-tuning: load the trained weights at `source` (`train.init_from`) into the
        modules `setup` built. Called after `setup` on every rank, unless the run resumes from
        a checkpoint of its own. The optimizers and schedules start fresh."""
        raise InputError(
            f"{type(self).__name__} cannot start from saved weights (train.init_from={source})"
        )

    def modules(self) -> dict[str, nn.Module]:
        """Named modules whose weights are trained and checkpointed (names: python identifiers).

        Must return the same objects on every call.
        """
        raise NotImplementedError

    def optimizers(self) -> dict[str, OptimizerSpec]:
        """Optimizer name -> spec. Default: one optimizer "main" over all modules."""
        return {MAIN: OptimizerSpec(tuple(self.modules()))}

    def optimizer_active(self, name: str, step: int) -> bool:
        """Whether optimizer `name` has started at global step `step`."""
        return step >= self.optimizers()[name].start_step

    def train_dataset(self) -> Dataset:
        """Map-style dataset; the engine batches, shuffles and shards it across ranks."""
        raise NotImplementedError

    def valid_dataset(self) -> Dataset | None:
        """Map-style validation dataset, or None for no validation."""
        return None

    def collate(self, items: list[Any]) -> Any:
        """Items -> batch. Tensors (in dicts/lists/tuples) are moved to the device by the engine."""
        return default_collate(items)

    def train_step(self, models: Mapping[str, nn.Module], batch: Any, step: int) -> StepOutput:
        """Losses of one micro-batch at global step `step` (0-based).

        Return a scalar loss (single optimizer), a `Phase`, a list of phases, or yield phases
        (each optimizer at most once per call). Runs under autocast; the engine does backward.
        """
        raise NotImplementedError

    def valid_step(self, models: Mapping[str, nn.Module], batch: Any) -> dict[str, float]:
        """Metrics of one validation batch (averaged over batches, weighted by batch size)."""
        return {}

    def log_media(self, models: Mapping[str, nn.Module], logger: Any, step: int) -> None:
        """After validation: e.g. `logger.audio("valid/sample", wav, sample_rate, step)`.

        Called on every rank (FSDP forwards need them all); the logger writes on rank 0 only.
        """

    def fsdp_units(self, name: str, module: nn.Module) -> list[nn.Module]:
        """Submodules sharded as separate FSDP units. Default: children of every ModuleList."""
        return default_fsdp_units(module)
