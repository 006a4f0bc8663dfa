"""The training engine: one loop for every model, from a laptop CPU to many GPUs and nodes.

`Trainer(task, config, out_dir, resume=...)` builds everything around a `TrainTask`: device,
DDP/FSDP wrapping, AdamW + warm-up/cosine per optimizer, data sharding, EMA, autocast; `fit()`
runs the loop with gradient accumulation, clipping, NaN/inf skipping, validation, logging,
checkpoints and clean stops on SIGTERM/SIGINT. A stopped run resumed with `resume=True` ends
with exactly the weights of an uninterrupted one (same world size and device).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segue.config import save_config, to_dict
from segue.errors import InputError
from segue.train import checkpoint as ckpt
from segue.train.config import OptimConfig, RunConfig
from segue.train.data import build_data, move_to_device, shutdown_workers
from segue.train.distributed import (
    all_reduce,
    barrier,
    full_tensor,
    init_distributed,
    resolve_device,
    shard_fsdp,
    wrap_ddp,
)
from segue.train.ema import EMA
from segue.train.lock import lock_run_folder
from segue.train.logger import RunLogger
from segue.train.optim import build_adamw
from segue.train.schedule import build_scheduler
from segue.train.seed import RANK_SEED_STRIDE, fork_rng, seed_everything
from segue.train.signals import StopRequests
from segue.train.state import (
    changed_since,
    checkpoint_contents,
    find_resume_checkpoint,
    restore_checkpoint,
)
from segue.train.task import Phase, TrainTask

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
_FIXED_OPTIM_FIELDS = ("max_steps", "grad_accum")  # run-wide, not per optimizer


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
        self._check_settings()

        seed_everything(tc.seed)  # model init: the same on every rank and every run
        task.setup(self.device)
        self.raw_modules = dict(task.modules())
        for name, module in self.raw_modules.items():
            if not name.isidentifier():
                raise InputError(f"module name {name!r} must be a python identifier")
            module.to(self.device)
        self.specs = dict(task.optimizers())
        self._check_specs()
        self._check_run_folder(resume)
        self.models = self._wrap_modules()
        self._build_optimizers()
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

    # ---------------------------------------------------------------- construction

    def _check_settings(self) -> None:
        tc, oc = self.train_cfg, self.optim_cfg
        if tc.distributed == "none" and self.dist.is_distributed:
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

    @property
    def mode(self) -> str:
        """How modules are wrapped: "none" (one process), "ddp" or "fsdp"."""
        return self.train_cfg.distributed if self.dist.is_distributed else "none"

    def _check_specs(self) -> None:
        if not self.specs:
            raise InputError("task.optimizers() declared no optimizer")
        owner: dict[str, str] = {}
        for opt_name, spec in self.specs.items():
            for module_name in spec.modules:
                if module_name not in self.raw_modules:
                    raise InputError(
                        f"optimizer {opt_name!r} names module {module_name!r}; "
                        f"modules: {sorted(self.raw_modules)}"
                    )
                if module_name in owner:
                    raise InputError(
                        f"module {module_name!r} is in optimizers {owner[module_name]!r} "
                        f"and {opt_name!r}"
                    )
                owner[module_name] = opt_name
            bad = sorted(set(spec.overrides) - {f.name for f in dataclasses.fields(OptimConfig)})
            fixed = sorted(set(spec.overrides) & set(_FIXED_OPTIM_FIELDS))
            if bad or fixed:
                raise InputError(f"optimizer {opt_name!r}: cannot override {bad + fixed}")
        self._trained = owner
        if self.mode == "fsdp" and len(self.specs) > 1 and self.optim_cfg.grad_accum > 1:
            raise InputError(
                "FSDP with several optimizers does not support grad_accum > 1 "
                "(use ddp, or grad_accum=1)"
            )

    def _check_run_folder(self, resume: bool) -> None:
        if not resume and ckpt.list_checkpoints(self.checkpoint_dir):
            raise FileExistsError(
                f"{self.out_dir} already holds checkpoints: pass --resume to continue that run, "
                "or choose another --out"
            )

    def _wrap_modules(self) -> dict[str, nn.Module]:
        models = {}
        for name, module in self.raw_modules.items():
            trainable = any(p.requires_grad for p in module.parameters())
            if name not in self._trained or not trainable or self.mode == "none":
                models[name] = module
            elif self.mode == "ddp":
                models[name] = wrap_ddp(
                    module,
                    self.device,
                    find_unused_parameters=self.train_cfg.find_unused_parameters,
                )
            else:
                models[name] = shard_fsdp(module, self.task.fsdp_units(name, module))
        return models

    def _build_optimizers(self) -> None:
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
        self.optim_cfgs: dict[str, OptimConfig] = {}
        self._params: dict[str, list[nn.Parameter]] = {}
        # per optimizer: its modules in one container (the parameter names of its checkpoint)
        # and which of its parameter groups decay (how the config's weight decay applies)
        self.param_containers: dict[str, nn.Module] = {}
        self.decay_groups: dict[str, list[bool]] = {}
        for name, spec in self.specs.items():
            cfg = dataclasses.replace(self.optim_cfg, **spec.overrides)
            modules = [self.raw_modules[m] for m in spec.modules]
            optimizer, self._params[name], self.decay_groups[name] = build_adamw(name, cfg, modules)
            self.optimizers[name] = optimizer
            self.schedulers[name] = build_scheduler(
                optimizer, cfg.warmup_steps, self.schedule_horizon(name), cfg.min_lr_ratio
            )
            self.optim_cfgs[name] = cfg
            container = nn.ModuleDict({m: self.raw_modules[m] for m in spec.modules})
            self.param_containers[name] = container
        self._others = {
            name: [p for other, ps in self._params.items() if other != name for p in ps]
            for name in self._params
        }

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

    # ---------------------------------------------------------------- precision

    def autocast_dtype(self) -> torch.dtype | None:
        """bf16 when asked (or "auto" on a CUDA device with bf16), else None (fp32)."""
        precision = self.train_cfg.precision
        if precision == "bf16":
            return torch.bfloat16
        if precision == "auto" and self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None

    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = self.autocast_dtype()
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # ---------------------------------------------------------------- one step

    def _key(self, base: str, name: str) -> str:
        return base if len(self.specs) == 1 else f"{base}_{name}"

    def _phases(self, output: Any) -> Iterator[Phase]:
        if isinstance(output, torch.Tensor):
            if len(self.specs) != 1:
                raise TypeError(
                    "train_step returned a bare loss but the task has several optimizers"
                )
            return iter([Phase(next(iter(self.specs)), output)])
        if isinstance(output, Phase):
            return iter([output])
        if isinstance(output, (dict, str)) or not hasattr(output, "__iter__"):
            raise TypeError(
                f"train_step must return a loss tensor, a Phase or phases, got {type(output)}"
            )
        return iter(output)

    def _check_phase(self, phase: Any, done: set[str]) -> str:
        if not isinstance(phase, Phase):
            raise TypeError(f"train_step produced {type(phase).__name__}, expected Phase")
        name = phase.optimizer
        if name not in self.specs:
            raise InputError(f"phase for unknown optimizer {name!r}; known: {sorted(self.specs)}")
        if name in done:
            raise InputError(f"optimizer {name!r} got two phases in one train_step: sum its losses")
        if self.step < self.specs[name].start_step:
            raise InputError(
                f"phase for optimizer {name!r} at step {self.step}, before its start_step "
                f"{self.specs[name].start_step}: check task.optimizer_active(name, step)"
            )
        if phase.loss.numel() != 1:
            raise InputError(
                f"loss of {name!r} must be a scalar, got shape {tuple(phase.loss.shape)}"
            )
        done.add(name)
        return name

    @contextlib.contextmanager
    def _grad_sync(self, sync: bool) -> Iterator[None]:
        """Within: backward all-reduces gradients only if `sync` (last micro-batch)."""
        if sync or not self.dist.is_distributed:
            yield
            return
        with contextlib.ExitStack() as stack:
            for module in self.models.values():
                if hasattr(module, "no_sync"):  # DDP
                    stack.enter_context(module.no_sync())
                elif hasattr(module, "set_requires_gradient_sync"):  # FSDP2
                    module.set_requires_gradient_sync(False)
                    stack.callback(module.set_requires_gradient_sync, True)
            yield

    def _backward(self, name: str, loss: torch.Tensor) -> None:
        """Backward `loss`, keeping only the gradients of optimizer `name`'s parameters."""
        others = self._others[name]
        if not others:
            loss.backward()
            return
        saved = [p.grad for p in others]
        for p in others:
            p.grad = None
        try:
            loss.backward()
        finally:
            for p, grad in zip(others, saved):
                p.grad = grad

    def _optimizer_step(self, name: str, bad: torch.Tensor) -> tuple[bool, torch.Tensor, float]:
        """Clip and step optimizer `name` unless any rank saw a non-finite loss or gradient."""
        optimizer, clip = self.optimizers[name], self.optim_cfgs[name].grad_clip
        flag = bad.to(self.device, torch.float32).reshape(1)
        all_reduce(flag, "max")
        norm = full_tensor(
            torch.nn.utils.clip_grad_norm_(
                self._params[name], clip if clip is not None else math.inf
            )
        ).detach()
        ok = bool(((flag[0] == 0) & torch.isfinite(norm)).item())
        lr = float(optimizer.param_groups[0]["lr"])
        if ok:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
            self.schedulers[name].step()
        return ok, norm, lr

    def train_step(self) -> dict[str, float]:
        """One optimizer step over `grad_accum` micro-batches; returns its scalars."""
        accum = self.optim_cfg.grad_accum
        bad: dict[str, torch.Tensor] = {}
        values: dict[str, list[torch.Tensor]] = defaultdict(list)
        stepped: dict[str, bool] = {}
        lrs: dict[str, float] = {}
        for micro in range(accum):
            batch = move_to_device(self.batches.next(), self.device)
            last = micro == accum - 1
            with self._grad_sync(last):
                with self._autocast():  # a plain function computes its losses here,
                    output = self.task.train_step(self.models, batch, self.step)
                phases = self._phases(output)  # a generator at each next() below
                done: set[str] = set()
                while True:
                    with self._autocast():
                        phase = next(phases, None)
                    if phase is None:
                        break
                    name = self._check_phase(phase, done)
                    loss = phase.loss.reshape(())
                    not_finite = ~torch.isfinite(loss.detach())
                    bad[name] = bad[name] | not_finite if name in bad else not_finite
                    values[self._key("loss", name)].append(loss.detach().float())
                    for key, value in phase.metrics.items():
                        values[key].append(torch.as_tensor(value).detach().float().reshape(()))
                    self._backward(name, loss / accum)
                    if last:
                        ok, norm, lrs[name] = self._optimizer_step(name, bad[name])
                        stepped[name] = ok
                        values[self._key("grad_norm", name)].append(norm.float())
        for optimizer in self.optimizers.values():  # phases missing from the last micro-batch
            optimizer.zero_grad(set_to_none=True)
        keys = list(values)
        out = {}
        if keys:  # one device-to-host copy for all the step's scalars
            means = [torch.stack([v.to(self.device) for v in values[k]]).mean() for k in keys]
            out = dict(zip(keys, torch.stack(means).tolist()))
        out.update({self._key("lr", name): lr for name, lr in lrs.items()})
        skipped = sorted(name for name, ok in stepped.items() if not ok)
        if skipped:
            self._on_bad_step(skipped, out)
        else:
            self.nan_consecutive = 0
            if self.ema is not None:
                self.ema.update()
        return out

    def _on_bad_step(self, skipped: list[str], values: dict[str, float]) -> None:
        self.nan_total += 1
        self.nan_consecutive += 1
        losses = {k: v for k, v in values.items() if k.startswith(("loss", "grad_norm"))}
        self.logger.message(
            f"step {self.step}: non-finite loss or gradients for {skipped} {losses}; step "
            f"skipped ({self.nan_consecutive} in a row, {self.nan_total} in all)"
        )
        if self.nan_consecutive >= self.train_cfg.max_nan_steps:
            where = self.last_checkpoint or ckpt.latest_checkpoint(self.checkpoint_dir)
            raise RuntimeError(
                f"training stopped: {self.nan_consecutive} consecutive steps (up to step "
                f"{self.step}) had a non-finite loss or gradient norm {losses} "
                f"(train.max_nan_steps={self.train_cfg.max_nan_steps}). Last checkpoint: "
                f"{where}. Try a lower optim.lr, optim.grad_clip, train.precision=fp32, or "
                "check the data."
            )

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

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Average `task.valid_step` metrics over the validation set (all ranks), then media."""
        if self.valid_loader is None:
            return {}
        tc = self.train_cfg
        use_ema = self.ema is not None and tc.valid_with_ema
        was_training = {name: m.training for name, m in self.models.items()}
        sizes = [len(b) for b in self.valid_sampler]
        sums: dict[str, float] = defaultdict(float)
        count = 0
        with fork_rng(), self.ema.applied() if use_ema else contextlib.nullcontext():
            for module in self.models.values():
                module.eval()
            batches = iter(self.valid_loader)
            try:
                for index, (size, batch) in enumerate(zip(sizes, batches)):
                    if tc.valid_batches is not None and index >= tc.valid_batches:
                        break
                    with self._autocast():
                        metrics = self.task.valid_step(
                            self.models, move_to_device(batch, self.device)
                        )
                    for key, value in metrics.items():
                        sums[key] += float(value) * size
                    count += size
                keys = sorted(sums)
                totals = torch.tensor(
                    [sums[k] for k in keys] + [count], dtype=torch.float64, device=self.device
                )
                all_reduce(totals)
                result = {
                    k: float(totals[i] / max(totals[-1].item(), 1)) for i, k in enumerate(keys)
                }
                self.task.log_media(self.models, self.logger, self.step)
            finally:
                shutdown_workers(batches)
                for name, module in self.models.items():
                    module.train(was_training[name])
        if result:
            self.logger.scalars(result, self.step, prefix="valid")
        self.logger.flush()
        self.last_valid = result
        return result

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
                print(f"no checkpoint in {self.checkpoint_dir}: starting from scratch", flush=True)
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
            import torch.distributed as dist

            barrier()
            dist.destroy_process_group()
            self._owns_group = False

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
