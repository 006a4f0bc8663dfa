"""The training engine: one loop for every model, from a laptop CPU to many GPUs and nodes.

`Trainer(task, config, out_dir, resume=...)` builds everything around a `TrainTask`: device,
DDP/FSDP wrapping, AdamW + warm-up/cosine per optimizer, data sharding, EMA, autocast; `fit()`
runs the loop with gradient accumulation, clipping, NaN/inf skipping, validation, logging,
checkpoints and clean stops on SIGTERM/SIGINT. A stopped run resumed with `resume=True` ends
with exactly the weights of an uninterrupted one (same world size and device).

The parts live beside it: `build` (checks, wrapping, optimizers), `step` (one optimizer step),
`validate`, `state` (what a checkpoint holds). This file is the loop that ties them together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from segue.config import save_config, to_dict
from segue.errors import InputError
from segue.train import build, step
from segue.train import checkpoint as ckpt
from segue.train.config import OptimConfig, RunConfig
from segue.train.data import build_data
from segue.train.distributed import (
    all_reduce,
    barrier,
    init_distributed,
    leave_process_group,
    resolve_device,
)
from segue.train.ema import EMA
from segue.train.lock import lock_run_folder
from segue.train.logger import RunLogger
from segue.train.seed import RANK_SEED_STRIDE, seed_everything
from segue.train.signals import StopRequests
from segue.train.state import (
    changed_since,
    checkpoint_contents,
    find_resume_checkpoint,
    restore_checkpoint,
)
from segue.train.task import TrainTask
from segue.train.validate import validate as run_validation

COMPLETED = "completed"
INTERRUPTED = "interrupted"


@dataclasses.dataclass
class FitResult:
    """How `Trainer.fit` ended: status (COMPLETED, or INTERRUPTED by SIGTERM/SIGINT after a
    checkpoint), the step reached, the last logged training averages and the last validation
    metrics (empty when none ran)."""

    status: str
    step: int
    train: dict[str, float] = dataclasses.field(default_factory=dict)
    valid: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def interrupted(self) -> bool:
        return self.status == INTERRUPTED


class Trainer:
    """Trains `task` as `config` (a `RunConfig` subclass) says; writes under `out_dir`.

    Run folder: config.json, checkpoints/step_*/ (+ `latest`), tensorboard/.
    Attributes after construction: step (completed optimizer steps), epoch, batch_in_epoch,
    models (wrapped), raw_modules, optimizers, schedulers, ema, device, dist, batches (the
    training stream), train_dataset, train_sampler, valid_loader. Checkpoints: `state.py`.
    """

    def __init__(
        self,
        task: TrainTask,
        config: RunConfig,
        out_dir: str | os.PathLike,
        *,
        resume: bool = False,
    ) -> None:
        if not (hasattr(config, "optim") and hasattr(config, "train")):
            raise TypeError("config must be a RunConfig (with `optim` and `train` sections)")
        self.task = task
        self.config = config
        self.optim_cfg: OptimConfig = config.optim
        self.train_cfg = config.train
        self.out_dir = Path(out_dir)
        self.checkpoint_dir = self.out_dir / "checkpoints"
        self.dist, self._owns_group = init_distributed()
        self.lock = lock_run_folder(self.out_dir, self.dist.is_main)
        try:
            self._build(task, config, resume)
        except BaseException:
            self.lock.release()
            raise

    def _build(self, task: TrainTask, config: RunConfig, resume: bool) -> None:
        tc = self.train_cfg
        self.device = resolve_device(tc.device, self.dist)
        self.step = 0
        self.nan_total = 0
        self.nan_consecutive = 0
        self.status: str | None = None
        self.last_train: dict[str, float] = {}  # the last logged training averages
        self.last_valid: dict[str, float] = {}  # the last validation metrics
        self.last_checkpoint: Path | None = None
        self.resumed_from: Path | None = None
        self.logger = RunLogger(None, enabled=False, total_steps=self.optim_cfg.max_steps)
        self._saved_step = -1
        self.stops = StopRequests(self._announce_stop)
        build.check_settings(self)

        seed_everything(tc.seed)  # model init: the same on every rank and every run
        task.setup(self.device)
        if tc.init_from and not (resume and ckpt.list_checkpoints(self.checkpoint_dir)):
            task.load_initial(tc.init_from)  # fine-tuning; a resumed run's checkpoint has its own
        self.raw_modules = dict(task.modules())
        for name, module in self.raw_modules.items():
            if not name.isidentifier():
                raise InputError(f"module name {name!r} must be a python identifier")
            module.to(self.device)
        self.specs = dict(task.optimizers())
        self._trained = build.check_specs(self)  # {module: its optimizer}
        build.check_run_folder(self, resume)
        self.models = build.wrap_modules(self)
        build.build_optimizers(self)  # optimizers, schedulers, optim_cfgs, param_containers
        trained = [n for n in self.raw_modules if n in self._trained]
        self.ema = (
            EMA({n: self.raw_modules[n] for n in trained}, tc.ema_decay)
            if tc.ema_decay is not None
            else None
        )
        self.batches, self.valid_sampler, self.valid_loader = build_data(
            task, tc, self.dist, self.device
        )
        self.train_dataset = self.batches.dataset
        self.train_sampler = self.batches.sampler
        self.train_loader = self.batches.loader
        seed_everything(tc.seed + RANK_SEED_STRIDE * self.dist.rank)  # training-time streams

        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            ckpt.clean_temporary(self.checkpoint_dir)
        barrier()
        if resume:
            self._resume()
        # Written once the checkpoint is loaded and checked: a resume refused for a changed
        # model leaves the run's config.json as it was, so a plain --resume still works.
        if self.dist.is_main:
            save_config(config, self.out_dir / "config.json")
        barrier()

    @property
    def mode(self) -> str:
        """How modules are wrapped: "none" (one process), "ddp" or "fsdp"."""
        return self.train_cfg.distributed if self.dist.is_distributed else "none"

    def schedule_horizon(self, name: str) -> int:
        """Steps over which optimizer `name`'s learning-rate schedule runs."""
        return max(1, self.optim_cfg.max_steps - self.specs[name].start_step)

    @property
    def epoch(self) -> int:
        """The epoch the training stream is in (0-based)."""
        return self.batches.epoch

    @property
    def batch_in_epoch(self) -> int:
        """Training batches this rank has taken in the current epoch."""
        return self.batches.batch_in_epoch

    def autocast_dtype(self) -> torch.dtype | None:
        """bf16 when asked (or "auto" on a CUDA device with bf16), else None (fp32)."""
        return step.autocast_dtype(self.train_cfg.precision, self.device)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return step.autocast(self.train_cfg.precision, self.device)

    def train_step(self) -> dict[str, float]:
        """One optimizer step over `grad_accum` micro-batches; returns its scalars
        (`segue.train.step`)."""
        return step.train_step(self)

    # ---------------------------------------------------------------- loop

    def fit(self) -> FitResult:
        """Train to optim.max_steps; the result says whether it completed or was interrupted
        by SIGTERM/SIGINT (a checkpoint of the last finished step is saved first), and the last
        training and validation numbers."""
        tc, max_steps = self.train_cfg, self.optim_cfg.max_steps
        if not self.lock.active:  # fit again after an earlier fit released the folder
            self.lock = lock_run_folder(self.out_dir, self.dist.is_main)
        self.logger = RunLogger(
            self.out_dir,
            enabled=self.dist.is_main,
            total_steps=max_steps,
            initial_step=self.step,
            progress=tc.progress,
            tensorboard=tc.tensorboard,
        )
        window: dict[str, list[float]] = defaultdict(list)
        items_per_step = tc.batch_size * self.optim_cfg.grad_accum * self.dist.world_size
        with self.stops:  # SIGTERM / SIGINT: checkpoint after this step, return
            try:
                if self.resumed_from is not None:
                    self.logger.message(f"resumed from {self.resumed_from} at step {self.step}")
                for name, module in self.models.items():
                    if name in self._trained:
                        module.train()
                while self.step < max_steps:
                    values = self.train_step()
                    self.step += 1
                    for key, value in values.items():
                        if math.isfinite(value):
                            window[key].append(value)
                    self.logger.step(self.step)
                    if self.step % tc.log_every == 0 or self.step == max_steps:
                        stats = {key: sum(v) / len(v) for key, v in window.items() if v}
                        stats.update(self.logger.throughput(self.step, items_per_step))
                        stats["nan_skipped"] = float(self.nan_total)
                        self.logger.scalars(stats, self.step)
                        self.last_train = stats
                        window.clear()
                    stop = self._stop_agreed()
                    if not stop and (self.step % tc.valid_every == 0 or self.step == max_steps):
                        self.validate()
                    if stop or self.step % tc.checkpoint_every == 0 or self.step == max_steps:
                        self.save_checkpoint()
                    if stop:
                        here = self.stops.requested
                        cause = f"signal {self.stops.signal}" if here else "another rank's signal"
                        self.logger.message(
                            f"stopped by {cause} at step {self.step}; checkpoint saved in "
                            f"{self.last_checkpoint}, continue with --resume"
                        )
                        return self._ended(INTERRUPTED)
                if self._saved_step != self.step and max_steps > 0:
                    self.save_checkpoint()
                return self._ended(COMPLETED)
            finally:
                self.batches.close()  # the workers end here, whatever ended the loop
                self.lock.release()  # nothing more is written: another run may take the folder
                self.logger.close()

    def _ended(self, status: str) -> FitResult:
        self.status = status
        return FitResult(status, self.step, dict(self.last_train), dict(self.last_valid))

    def _announce_stop(self, signum: int) -> None:
        self.logger.message(
            f"signal {signum}: checkpointing after this step, then exiting "
            "(Ctrl-C again to abort without a checkpoint)"
        )

    def request_stop(self) -> None:
        """Ask `fit()` to checkpoint and return after the current step (as SIGTERM does)."""
        self.stops.request()

    def _stop_agreed(self) -> bool:
        """Whether any rank was asked to stop (all ranks agree, so they save together)."""
        flag = torch.tensor([float(self.stops.requested)], device=self.device)
        return bool(all_reduce(flag, "max").item() > 0)

    # ---------------------------------------------------------------- validation

    def validate(self) -> dict[str, float]:
        """Average `task.valid_step` metrics over the validation set (all ranks), then media
        (`segue.train.validate`)."""
        return run_validation(self)

    # ---------------------------------------------------------------- checkpoints

    def save_checkpoint(self) -> Path | None:
        """Checkpoint the current step (all ranks call; rank 0 writes). Returns its folder."""
        weights, objects = checkpoint_contents(self)
        path = None
        if self.dist.is_main:
            path = ckpt.save_checkpoint(
                self.checkpoint_dir,
                self.step,
                weights=weights,
                objects=objects,
                config=to_dict(self.config),
                keep_last=self.train_cfg.keep_last,
            )
        barrier()
        self.last_checkpoint = path or self.checkpoint_dir / ckpt.step_dir_name(self.step)
        self._saved_step = self.step
        return path

    def _resume(self) -> None:
        found = find_resume_checkpoint(self.checkpoint_dir, self.dist)
        if found is None:
            if self.dist.is_main:
                start = (f"the weights of {self.train_cfg.init_from}" if self.train_cfg.init_from
                         else "scratch")
                print(f"no checkpoint in {self.checkpoint_dir}: starting from {start}", flush=True)
            return
        try:
            self.load_checkpoint(ckpt.load_checkpoint(found, verify=False))
        except ckpt.CheckpointError as error:
            why = changed_since(found, self.out_dir, self.config)
            raise ckpt.CheckpointError(f"{error}{why}") from error
        self.resumed_from = found

    def load_checkpoint(self, checkpoint: ckpt.Checkpoint) -> None:
        """Restore weights, optimizers, schedules, EMA, data position and RNG (all ranks)."""
        restore_checkpoint(self, checkpoint)
        self._saved_step = self.step
        self.last_checkpoint = checkpoint.path

    # ---------------------------------------------------------------- teardown

    def close(self) -> None:
        """Release the run folder; leave the process group if this trainer created it."""
        self.lock.release()
        if self._owns_group:
            leave_process_group()
            self._owns_group = False

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def train_to_end(task: Any, config: Any, out_dir: str | Path, *, resume: bool) -> FitResult:
    """Train (or resume) `task` into `out_dir` and release the folder: the result when the run
    completed. Stopped by SIGTERM/SIGINT (its checkpoint saved) it raises KeyboardInterrupt, so
    whatever comes next (a script's `&&`, a recipe's next step) does not go on with an
    unfinished run; the command line turns it into status 130."""
    with Trainer(task, config, out_dir, resume=resume) as trainer:
        result = trainer.fit()
    if result.interrupted:
        raise KeyboardInterrupt(f"{out_dir}: stopped at step {result.step}")
    return result
