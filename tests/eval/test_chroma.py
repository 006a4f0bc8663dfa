"""Pitch-class similarity: same chord (other octave, other voicing) close, another key far."""

from __future__ import annotations

import numpy as np
import pytest

from segue.eval.chroma import ChromaEncoder
from segue.eval.speaker import cosine

RATE = 16000


def chord(freqs: list[float], seconds: float = 1.5, decay: float = 2.0) -> np.ndarray:
    """Piano-like tones: each note with 4 decaying harmonics."""
    t = np.arange(int(seconds * RATE)) / RATE
    x = sum(
        np.sin(2 * np.pi * f * k * t) / k * np.exp(-decay * t) for f in freqs for k in range(1, 5)
    )
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


C_MAJOR = [261.63, 329.63, 392.00]  # C4 E4 G4
C_MAJOR_HIGH = [523.25, 659.26, 783.99]  # C5 E5 G5
F_SHARP_MAJOR = [369.99, 466.16, 554.37]  # F#4 A#4 C#5


def test_same_pitch_classes_are_close_and_another_key_is_far():
    encoder = ChromaEncoder()
    c, c_high, f_sharp = (encoder.embed(chord(f)) for f in (C_MAJOR, C_MAJOR_HIGH, F_SHARP_MAJOR))
    assert c.shape == (12,) and abs(float(np.linalg.norm(c)) - 1.0) < 1e-5
    assert cosine(c, c_high) > 0.8  # an octave up: the same pitch classes
    assert cosine(c, f_sharp) < 0.0  # a tritone away: no pitch class in common
    assert cosine(c, c_high) > cosine(c, f_sharp) + 0.8


def test_silence_and_bad_input():
    encoder = ChromaEncoder()
    assert not encoder.embed(np.zeros(RATE, np.float32)).any()
    with pytest.raises(ValueError, match="NaN"):
        encoder.embed(np.full(RATE, np.nan, np.float32))
    with pytest.raises(ValueError, match="none"):
        encoder.embed(np.zeros(0, np.float32))
    assert encoder.embed(chord(C_MAJOR, seconds=0.05)).shape == (12,)  # shorter than n_fft
