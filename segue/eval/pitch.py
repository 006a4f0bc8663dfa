"""Pitch of speech: how wide a voice's melody is, in semitones.

    pitch_range(audio, 16000)        # [T] float32 -> semitones between the 5th and 95th
                                     # percentile of voiced F0, or None with under 10 voiced frames

A continuation that keeps its prompt's voice should also keep its intonation: a monotone
drift (range near 0) or a wider melody than the prompt's both say the model lost the speaker.
F0 comes from probabilistic YIN (librosa's `pyin`, 60-500 Hz, 20 ms hop), whose voicing
decision keeps unvoiced frames and silence out of the range.
"""

from __future__ import annotations

import numpy as np

from segue.errors import InputError

#: The F0 search range (Hz): low male to high female/child speech.
FMIN, FMAX = 60.0, 500.0
#: Fewer voiced frames than this (0.2 s at the 20 ms hop): no range.
MIN_VOICED = 10


def voiced_f0(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """[T] float audio -> F0 in Hz of its voiced frames, [n_voiced] (20 ms hop)."""
    import librosa

    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if not np.isfinite(x).all():
        raise InputError("audio has NaN or infinite samples")
    hop = round(0.02 * sample_rate)
    frame = max(4 * hop, 2 * int(np.ceil(sample_rate / FMIN)) + 4)  # YIN: half a frame > a period
    if len(x) < frame or float(np.abs(x).max(initial=0.0)) == 0.0:
        return np.zeros(0, dtype=np.float64)
    f0, voiced, _ = librosa.pyin(
        x, fmin=FMIN, fmax=FMAX, sr=sample_rate, frame_length=frame, hop_length=hop, center=False
    )
    keep = voiced & np.isfinite(f0)
    return f0[keep].astype(np.float64)


def pitch_range(audio: np.ndarray, sample_rate: int) -> float | None:
    """Semitones between the 5th and 95th percentile of voiced F0 (None: too little voicing)."""
    f0 = voiced_f0(audio, sample_rate)
    if len(f0) < MIN_VOICED:
        return None
    low, high = np.percentile(f0, [5, 95])
    return float(12.0 * np.log2(high / low))
