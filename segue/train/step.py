"""One optimizer step of the `Trainer`: micro-batches, per-optimizer backward, clip, NaN skip.

For each of `grad_accum` micro-batches the task's `train_step` yields one `Phase` per optimizer;
each phase is backpropagated as it comes, keeping only its optimizer's gradients, and on the last
micro-batch that optimizer is clipped and stepped at once (a GAN's generator phase then sees the
discriminator already updated). A non-finite loss or gradient norm on any rank skips that
optimizer's step; `train.max_nan_steps` bad steps in a row stop the run.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from segue.errors import InputError
from segue.runtime import cpu_has_native_bf16
from segue.train import checkpoint as ckpt
from segue.train.data import move_to_device
from segue.train.distributed import all_reduce, full_tensor
from segue.train.task import Phase

if TYPE_CHECKING:
    from segue.train.engine import Trainer


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 when asked ("auto" and "bf16-native": on a CUDA device with bf16; "bf16-native"
    also on a CPU that computes bf16 natively), else None (fp32)."""
    if precision == "bf16":
        return torch.bfloat16
    if precision in ("auto", "bf16-native") and device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if precision == "bf16-native" and device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of `precision` on `device` (a no-op for fp32)."""
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def scalar_key(base: str, name: str, n_optimizers: int) -> str:
    """`loss` with one optimizer, `loss_<name>` with several (same for grad_norm, lr)."""
    return base if n_optimizers == 1 else f"{base}_{name}"


def phases(output: Any, optimizers: list[str]) -> Iterator[Phase]:
    """What `task.train_step` returned (a loss, a Phase or an iterable of them) as phases."""
    if isinstance(output, torch.Tensor):
        if len(optimizers) != 1:
            raise TypeError("train_step returned a bare loss but the task has several optimizers")
        return iter([Phase(optimizers[0], output)])
    if isinstance(output, Phase):
        return iter([output])
    if isinstance(output, (dict, str)) or not hasattr(output, "__iter__"):
        raise TypeError(
            f"train_step must return a loss tensor, a Phase or phases, got {type(output)}"
        )
    return iter(output)


def check_phase(trainer: Trainer, phase: Any, done: set[str]) -> str:
    """The optimizer of `phase`, refused if unknown, repeated, early or not a scalar loss."""
    if not isinstance(phase, Phase):
        raise TypeError(f"train_step produced {type(phase).__name__}, expected Phase")
    name, specs = phase.optimizer, trainer.specs
    if name not in specs:
        raise InputError(f"phase for unknown optimizer {name!r}; known: {sorted(specs)}")
    if name in done:
        raise InputError(f"optimizer {name!r} got two phases in one train_step: sum its losses")
    if trainer.step < specs[name].start_step:
        raise InputError(
            f"phase for optimizer {name!r} at step {trainer.step}, before its start_step "
            f"{specs[name].start_step}: check task.optimizer_active(name, step)"
        )
    if phase.loss.numel() != 1:
        raise InputError(f"loss of {name!r} must be a scalar, got shape {tuple(phase.loss.shape)}")
    done.add(name)
    return name


@contextlib.contextmanager
def grad_sync(models: dict[str, nn.Module], distributed: bool, sync: bool) -> Iterator[None]:
    """Within: backward all-reduces gradients only if `sync` (last micro-batch)."""
    if sync or not distributed:
        yield
        return
    with contextlib.ExitStack() as stack:
        for module in models.values():
            if hasattr(module, "no_sync"):  # DDP
                stack.enter_context(module.no_sync())
            elif hasattr(module, "set_requires_gradient_sync"):  # FSDP2
                module.set_requires_gradient_sync(False)
                stack.callback(module.set_requires_gradient_sync, True)
        yield


def backward(loss: torch.Tensor, others: list[nn.Parameter]) -> None:
    """Backward `loss`, leaving the gradients of `others` (other optimizers' parameters) as
    they were."""
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


def optimizer_step(
    trainer: Trainer, name: str, bad: torch.Tensor
) -> tuple[bool, torch.Tensor, float]:
    """Clip and step optimizer `name` unless any rank saw a non-finite loss or gradient;
    (stepped, grad norm, lr). The schedule advances either way."""
    optimizer, clip = trainer.optimizers[name], trainer.optim_cfgs[name].grad_clip
    flag = bad.to(trainer.device, torch.float32).reshape(1)
    all_reduce(flag, "max")
    norm = full_tensor(
        torch.nn.utils.clip_grad_norm_(
            trainer._params[name], clip if clip is not None else math.inf
        )
    ).detach()
    ok = bool(((flag[0] == 0) & torch.isfinite(norm)).item())
    lr = float(optimizer.param_groups[0]["lr"])
    if ok:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
        trainer.schedulers[name].step()
    return ok, norm, lr


def train_step(trainer: Trainer) -> dict[str, float]:
    """One optimizer step over `grad_accum` micro-batches; returns its scalars."""
    accum = trainer.optim_cfg.grad_accum
    n_opt = len(trainer.specs)
    bad: dict[str, torch.Tensor] = {}
    values: dict[str, list[torch.Tensor]] = defaultdict(list)
    stepped: dict[str, bool] = {}
    lrs: dict[str, float] = {}
    for micro in range(accum):
        batch = move_to_device(trainer.batches.next(), trainer.device)
        last = micro == accum - 1
        with grad_sync(trainer.models, trainer.dist.is_distributed, last):
            with trainer._autocast():  # a plain function computes its losses here,
                output = trainer.task.train_step(trainer.models, batch, trainer.step)
            produced = phases(output, list(trainer.specs))  # a generator at each next() below
            done: set[str] = set()
            while True:
                with trainer._autocast():
                    phase = next(produced, None)
                if phase is None:
                    break
                name = check_phase(trainer, phase, done)
                loss = phase.loss.reshape(())
                not_finite = ~torch.isfinite(loss.detach())
                bad[name] = bad[name] | not_finite if name in bad else not_finite
                values[scalar_key("loss", name, n_opt)].append(loss.detach().float())
                for key, value in phase.metrics.items():
                    values[key].append(torch.as_tensor(value).detach().float().reshape(()))
                backward(loss / accum, trainer._others[name])
                if last:
                    ok, norm, lrs[name] = optimizer_step(trainer, name, bad[name])
                    stepped[name] = ok
                    values[scalar_key("grad_norm", name, n_opt)].append(norm.float())
    for optimizer in trainer.optimizers.values():  # phases missing from the last micro-batch
        optimizer.zero_grad(set_to_none=True)
    keys = list(values)
    out = {}
    if keys:  # one device-to-host copy for all the step's scalars
        means = [torch.stack([v.to(trainer.device) for v in values[k]]).mean() for k in keys]
        out = dict(zip(keys, torch.stack(means).tolist()))
    out.update({scalar_key("lr", name, n_opt): lr for name, lr in lrs.items()})
    skipped = sorted(name for name, ok in stepped.items() if not ok)
    if skipped:
        on_bad_step(trainer, skipped, out)
    else:
        trainer.nan_consecutive = 0
        if trainer.ema is not None:
            trainer.ema.update()
    return out


def on_bad_step(trainer: Trainer, skipped: list[str], values: dict[str, float]) -> None:
    """Count a skipped step; stop the run after `train.max_nan_steps` in a row."""
    trainer.nan_total += 1
    trainer.nan_consecutive += 1
    losses = {k: v for k, v in values.items() if k.startswith(("loss", "grad_norm"))}
    trainer.logger.message(
        f"step {trainer.step}: non-finite loss or gradients for {skipped} {losses}; step "
        f"skipped ({trainer.nan_consecutive} in a row, {trainer.nan_total} in all)"
    )
    limit = trainer.train_cfg.max_nan_steps
    if trainer.nan_consecutive >= limit:
        where = trainer.last_checkpoint or ckpt.latest_checkpoint(trainer.checkpoint_dir)
        raise RuntimeError(
            f"training stopped: {trainer.nan_consecutive} consecutive steps (up to step "
            f"{trainer.step}) had a non-finite loss or gradient norm {losses} "
            f"(train.max_nan_steps={limit}). Last checkpoint: "
            f"{where}. Try a lower optim.lr, optim.grad_clip, train.precision=fp32, or "
            "check the data."
        )
