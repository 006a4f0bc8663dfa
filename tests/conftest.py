"""Shared fixtures: small synthetic audio files written on the fly (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch


def tone(seconds: float, sample_rate: int = 16000, freq: float = 440.0, channels: int = 1):
    """A sine tone [T] (or [T, C]) at 0.5 amplitude."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    mono = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)


def write(path: Path, data, sample_rate: int = 16000, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sample_rate, **kwargs)
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Every test on one torch thread: tiny tensors run fastest so, and tests do not fight a busy
    machine's other jobs (a test that needs more sets them itself)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def audio_dir(tmp_path: Path) -> Path:
    """A LibriSpeech-like folder (speaker/chapter/utt) of mixed formats, rates and channels,
    with broken files mixed in: empty, not audio, truncated, NaN-filled."""
    root = tmp_path / "corpus"
    write(root / "spk1/ch1/a.wav", tone(1.0))
    write(root / "spk1/ch1/b.flac", tone(0.5, 22050, channels=2), 22050)
    write(root / "spk2/ch9/c.ogg", tone(0.7, 44100), 44100)
    write(root / "spk2/ch9/d.wav", tone(0.3, 8000), 8000)
    write(root / "spk3/ch1/e.flac", tone(2.0, 16000, 220.0))
    (root / "spk3/ch1/empty.wav").write_bytes(b"")
    (root / "spk3/ch1/notes.wav").write_text("this is not audio at all\n" * 20)
    (root / "spk3/ch1/readme.txt").write_text("transcripts live here")
    good = (root / "spk1/ch1/a.wav").read_bytes()
    (root / "spk2/ch9/truncated.wav").write_bytes(good[: len(good) // 3])
    nan = tone(0.5)
    nan[100:200] = np.nan
    write(root / "spk2/ch9/nan.wav", nan, subtype="FLOAT")
    return root


def quick_run_overrides(
    steps: int,
    *,
    batch_size: int = 2,
    every: int = 3,
    warmup: int = 1,
    log_every: int = 1,
    lr: float | None = None,
) -> list[str]:
    """`--set` overrides for a few-step, silent training run through the engine in a test
    (checkpoint and validation every `every` steps)."""
    return [
        f"optim.max_steps={steps}",
        f"optim.warmup_steps={warmup}",
        *([f"optim.lr={lr}"] if lr is not None else []),
        f"train.batch_size={batch_size}",
        "train.num_workers=0",
        f"train.checkpoint_every={every}",
        f"train.valid_every={every}",
        f"train.log_every={log_every}",
        "train.progress=false",
        "train.tensorboard=false",
    ]
