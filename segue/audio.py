"""Audio I/O: load any file libsndfile reads as float32 mono at a target rate, save WAV/FLAC.

Everything that reads audio in segue goes through `load`, so bad input fails in one place with a
clear `AudioError` naming the file and the cause (missing, not audio, empty, truncated, NaN/inf),
never with a traceback from deep inside libsndfile.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from segue.errors import InputError

if TYPE_CHECKING:
    import soundfile as sf

Normalization = Literal["peak", "rms"] | None

#: Peak level that `normalize="peak"` scales to (about -0.4 dBFS, leaves headroom for resampling).
PEAK_TARGET = 0.95
#: RMS level that `normalize="rms"` scales to (-20 dBFS), then limited so the peak stays <= 1.
RMS_TARGET = 0.1


class AudioError(InputError):
    """Audio that cannot be used, with the file and the cause in the message."""

    def __init__(self, path: str | os.PathLike | None, cause: str):
        self.path = None if path is None else str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}" if self.path else cause)


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says; read without decoding the samples."""

    path: str
    sample_rate: int
    num_frames: int
    channels: int
    format: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_frames / self.sample_rate


def _check_readable(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    return path


def _open(path: Path) -> sf.SoundFile:
    import soundfile as sf  # here, not at import: a model runs on tensors without it

    try:
        return sf.SoundFile(str(path))
    except sf.LibsndfileError as error:
        raise AudioError(path, f"not a readable audio file ({error.error_string})") from None
    except (RuntimeError, TypeError, ValueError) as error:
        raise AudioError(path, f"not a readable audio file ({error})") from None


_DECLARED_VS_ACTUAL = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAMING_SIZES = (0, 0xFFFFFFFF)  # placeholders written by streaming WAV writers


def _truncation(handle: sf.SoundFile) -> str | None:
    """Why a WAV-family file is truncated (its header promises more data than it holds), or None.

    libsndfile silently shortens such files; its header dump says "data : N (should be M)".
    """
    match = _DECLARED_VS_ACTUAL.search(handle.extra_info or "")
    if match is None:
        return None
    declared, actual = int(match.group(1)), int(match.group(2))
    if declared > actual and declared not in _STREAMING_SIZES:
        return f"truncated: header promises {declared} data bytes, the file holds {actual}"
    return None


def info(path: str | os.PathLike) -> AudioInfo:
    """Header information of an audio file; raises AudioError if it is not usable audio."""
    path = _check_readable(path)
    with _open(path) as handle:
        frames, rate, channels = handle.frames, handle.samplerate, handle.channels
        fmt, truncated = handle.format, _truncation(handle)
    if truncated:
        raise AudioError(path, truncated)
    if frames <= 0:
        raise AudioError(path, "contains no samples (zero-length audio)")
    if rate <= 0:
        raise AudioError(path, f"invalid sample rate {rate}")
    return AudioInfo(str(path), int(rate), int(frames), int(channels), str(fmt))


def load(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    *,
    offset: float = 0.0,
    duration: float | None = None,
    normalize: Normalization = None,
    check_finite: bool = True,
) -> np.ndarray:
    """Read `path` as float32 mono, resampled to `sample_rate` (native rate if None).

    Args:
        offset, duration: read only the segment [offset, offset + duration) seconds, seeking in
            the file rather than decoding it all. A segment past the end is cut at the end.
        normalize: "peak" scales the peak to PEAK_TARGET, "rms" the RMS to RMS_TARGET (peak
            limited to 1); silent audio is left as it is.
    Returns:
        audio: [T] float32 array.
    Raises:
        AudioError: missing file, not audio, zero-length, truncated, NaN/inf samples, bad segment.
    """
    import soundfile as sf  # here, not at import: a model runs on tensors without it

    path = _check_readable(path)
    if offset < 0 or (duration is not None and duration <= 0):
        raise AudioError(path, f"invalid segment offset={offset} duration={duration}")
    with _open(path) as handle:
        native_rate, total = handle.samplerate, handle.frames
        if total <= 0:
            raise AudioError(path, "contains no samples (zero-length audio)")
        truncated = _truncation(handle)
        if truncated:
            raise AudioError(path, truncated)
        start = round(offset * native_rate)
        if start >= total:
            raise AudioError(
                path, f"offset {offset:.3f}s is past the end ({total / native_rate:.3f}s)"
            )
        wanted = (
            total - start if duration is None else min(round(duration * native_rate), total - start)
        )
        try:
            if start:
                handle.seek(start)
            data = handle.read(wanted, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioError(path, f"cannot decode audio ({error})") from None
    if data.shape[0] < wanted:
        raise AudioError(
            path,
            f"truncated: header promises {wanted} frames from {start}, only {data.shape[0]} read",
        )
    audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if check_finite and not np.isfinite(audio).all():
        bad = int((~np.isfinite(audio)).sum())
        raise AudioError(path, f"contains {bad} NaN or infinite sample(s)")
    if sample_rate is not None and sample_rate != native_rate:
        audio = resample(audio, native_rate, sample_rate)
    return normalize_audio(audio, normalize)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample [T] (or [T, C]) float audio with soxr's high-quality filter."""
    if from_rate == to_rate:
        return np.asarray(audio, dtype=np.float32)
    if from_rate <= 0 or to_rate <= 0:
        raise InputError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    import soxr

    return soxr.resample(np.asarray(audio, dtype=np.float32), from_rate, to_rate, quality="HQ")


def normalize_audio(audio: np.ndarray, mode: Normalization) -> np.ndarray:
    """Scale [T] audio by peak or RMS (see `load`); silence (peak < 1e-8) is returned unchanged."""
    audio = np.asarray(audio, dtype=np.float32)
    if mode is None:
        return audio
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak < 1e-8:
        return audio
    if mode == "peak":
        gain = PEAK_TARGET / peak
    elif mode == "rms":
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
        gain = min(RMS_TARGET / max(rms, 1e-8), 1.0 / peak)
    else:
        raise InputError(f"normalize must be None, 'peak' or 'rms', got {mode!r}")
    return (audio * gain).astype(np.float32)


def rms_db(audio: np.ndarray) -> float:
    """RMS level in dBFS of [T] audio (-inf for digital silence)."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(audio))))
    return 20.0 * float(np.log10(rms)) if rms > 0 else float("-inf")


def is_silent(audio: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True when the whole signal is quieter than `threshold_db` dBFS RMS."""
    return rms_db(audio) < threshold_db


def save(path: str | os.PathLike, audio, sample_rate: int, *, subtype: str | None = None) -> None:
    """Write mono [T] or [1, T] audio (numpy or torch) as WAV/FLAC (format from the extension).

    The file is written to a temporary name and renamed, so readers never see half a file.
    Samples are clipped to [-1, 1]; NaN/inf raise AudioError instead of writing garbage.
    """
    path = Path(path)
    if hasattr(audio, "detach"):
        audio = audio.detach().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2 and 1 in audio.shape:
        audio = audio.reshape(-1)
    if audio.ndim != 1:
        raise AudioError(path, f"expected mono audio [T], got shape {tuple(audio.shape)}")
    if not np.isfinite(audio).all():
        raise AudioError(path, "refusing to write NaN or infinite samples")
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(path, f"unsupported output extension {path.suffix!r} (use .wav or .flac)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    default_subtype = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS"}[fmt]
    try:
        import soundfile as sf

        sf.write(
            str(tmp),
            np.clip(audio, -1.0, 1.0),
            sample_rate,
            subtype=subtype or default_subtype,
            format=fmt,
        )
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no stray temporary file on any failure
        raise
