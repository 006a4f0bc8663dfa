"""Run logging on rank 0: tqdm bar (loss, throughput, ETA), console lines, TensorBoard.

Other ranks get a logger whose methods do nothing, so callers never check the rank.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch


def _format(value: float) -> str:
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.3e}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.4f}"


class RunLogger:
    """Progress and scalars for a run that goes from `initial_step` to `total_steps`."""

    def __init__(
        self,
        out_dir: str | Path | None,
        *,
        enabled: bool = True,
        total_steps: int,
        initial_step: int = 0,
        progress: bool = True,
        tensorboard: bool = True,
    ) -> None:
        self.enabled = enabled
        self.writer: Any = None  # torch.utils.tensorboard.SummaryWriter, or None
        self.bar: Any = None
        self._last_time = time.perf_counter()
        self._last_step = initial_step
        if not enabled:
            return
        if tensorboard and out_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(out_dir) / "tensorboard"))
            except ImportError:
                warnings.warn(
                    "tensorboard is not installed (pip install 'segue[train]'): no event files",
                    RuntimeWarning,
                    stacklevel=2,
                )
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total_steps,
                initial=initial_step,
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
            )

    def step(self, step: int) -> None:
        """Advance the bar to `step`."""
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

    def throughput(self, step: int, items_per_step: int) -> dict[str, float]:
        """Steps/s and items/s since the previous call."""
        now = time.perf_counter()
        elapsed = max(now - self._last_time, 1e-9)
        steps = step - self._last_step
        self._last_time, self._last_step = now, step
        return {"steps_per_s": steps / elapsed, "items_per_s": steps * items_per_step / elapsed}

    def scalars(self, values: dict[str, float], step: int, prefix: str = "train") -> None:
        """TensorBoard scalars `prefix/name`, a console line, and the bar's postfix."""
        if not self.enabled:
            return
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)
        shown = {
            k: v for k, v in values.items() if not k.startswith(("lr", "grad_norm", "steps_per_s"))
        }
        line = " | ".join(f"{k} {_format(v)}" for k, v in shown.items())
        if self.bar is not None:
            if prefix == "train":  # the bar shows losses and throughput; ETA is tqdm's own
                short = {k: v for k, v in shown.items() if k.startswith("loss")}
                if "items_per_s" in values:
                    short["items/s"] = values["items_per_s"]
                self.bar.set_postfix_str(
                    " ".join(f"{k} {_format(v)}" for k, v in short.items()), refresh=False
                )
            self.bar.write(f"[{prefix} {step}] {line}", file=sys.stderr)
        else:
            print(f"[{prefix} {step}] {line}", file=sys.stderr, flush=True)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def audio(self, tag: str, audio: torch.Tensor, sample_rate: int, step: int) -> None:
        """Log a clip: `audio` [samples] or [channels, samples], float in [-1, 1]."""
        if self.writer is None:
            return
        clip = audio.detach().float().cpu()
        if clip.dim() == 2:
            clip = clip.mean(0)
        self.writer.add_audio(tag, clip.clamp(-1, 1).unsqueeze(0), step, sample_rate=sample_rate)

    def message(self, text: str) -> None:
        """A console line (rank 0), not breaking the bar."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
