"""Pitch range (semitones of voiced F0) on synthetic signals of known pitch."""

from __future__ import annotations

import numpy as np
import pytest

from segue.errors import InputError
from segue.eval.pitch import pitch_range, voiced_f0

pytest.importorskip("librosa")
RATE = 16000


def harmonic(f0: np.ndarray) -> np.ndarray:
    """A voiced-like signal (3 harmonics) following the per-sample F0 track [T] (Hz)."""
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(k * phase) / k for k in (1, 2, 3))
    return (0.3 * x).astype(np.float32)


def test_a_steady_tone_has_no_range_and_its_f0():
    f0 = voiced_f0(harmonic(np.full(RATE, 150.0)), RATE)
    assert len(f0) > 30 and np.median(f0) == pytest.approx(150.0, rel=0.02)
    assert pitch_range(harmonic(np.full(RATE, 150.0)), RATE) < 0.5


def test_an_octave_glide_spans_most_of_twelve_semitones():
    # 120 -> 240 Hz, even in semitones: the 5th-95th percentiles span 90 % of the octave
    glide = 120.0 * 2.0 ** np.linspace(0.0, 1.0, 2 * RATE)
    assert pitch_range(harmonic(glide), RATE) == pytest.approx(10.8, abs=1.0)


def test_silence_noise_and_short_audio_have_no_range():
    rng = np.random.default_rng(0)
    assert pitch_range(np.zeros(RATE, np.float32), RATE) is None
    assert pitch_range(0.1 * rng.standard_normal(RATE).astype(np.float32), RATE) is None
    assert pitch_range(harmonic(np.full(800, 150.0)), RATE) is None


def test_nan_audio_is_refused():
    x = harmonic(np.full(RATE, 150.0))
    x[10] = np.nan
    with pytest.raises(InputError, match="NaN"):
        pitch_range(x, RATE)
