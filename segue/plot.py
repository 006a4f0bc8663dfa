"""Pictures of audio: a log-mel spectrogram PNG, with the prompt boundary marked.

Uses matplotlib's Agg canvas directly (no pyplot, no global backend state, no display needed).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from segue.errors import InputError
from segue.features import log_mel_spectrogram

N_FFT, N_MELS, FLOOR_DB = 1024, 80, 80.0


def plot_spectrogram(
    audio: torch.Tensor | np.ndarray,
    sample_rate: int,
    path: str | os.PathLike,
    prompt_seconds: float | None = None,
    title: str | None = None,
) -> Path:
    """Write the log-mel spectrogram (dB, 80 dB range) of mono audio [T] or [1, T] to a PNG.

    prompt_seconds: a dashed vertical line there (where the prompt ends, the model begins).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = torch.as_tensor(audio, dtype=torch.float32).detach().cpu().reshape(-1)
    if x.numel() == 0:
        raise InputError("cannot plot empty audio")
    if not bool(torch.isfinite(x).all()):
        raise InputError("cannot plot audio with NaN or infinite samples")
    seconds = x.numel() / sample_rate
    x = torch.nn.functional.pad(x, (0, max(0, N_FFT - x.numel())))  # the STFT needs one window
    hop = max(1, sample_rate // 100)  # 10 ms
    mel = log_mel_spectrogram(x, sample_rate, n_fft=N_FFT, hop=hop, n_mels=N_MELS)
    db = (20 / np.log(10)) * mel.numpy()  # natural log of magnitude -> dB
    figure = Figure(figsize=(max(6.0, min(20.0, 1.2 * seconds)), 3.2), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    image = ax.imshow(
        db,
        origin="lower",
        aspect="auto",
        extent=(0.0, seconds, 0, N_MELS),
        vmin=float(db.max()) - FLOOR_DB,
        vmax=float(db.max()),
        cmap="magma",
        interpolation="nearest",
    )
    if prompt_seconds is not None:
        ax.axvline(prompt_seconds, color="white", linestyle="--", linewidth=1.5)
        ax.text(prompt_seconds, N_MELS, " prompt | generated", color="white", va="top", fontsize=8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band")
    if title:
        ax.set_title(title)
    figure.colorbar(image, ax=ax, format="%.0f dB")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(str(path), format="png")
    return path
