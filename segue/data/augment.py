"""Voice augmentation of training crops: more apparent speakers than the corpus has.

The real-speech corpus has ~50 voices (half of them a few lines long); these transforms make new
ones from them. Each is off unless its probability is above zero, and each is drawn from a
generator the caller seeds, so a resumed run sees the same crops.

    speed    resample as if recorded at a rate x f: pitch and formants move together by f, the
             duration by 1/f (the classic Kaldi speed perturbation; a longer or shorter vocal
             tract as well as a higher or lower voice)
    eq       three random peaking filters (RBJ biquads, +-`eq_db`, 150 Hz - 5 kHz): another
             microphone, another channel
    reverb   convolution with a synthetic room response: a direct impulse, then exponentially
             decaying noise with an RT60 drawn from `rt60` (another room)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segue import audio as audio_io
from segue.errors import InputError


@dataclass
class AugmentConfig:
    """Probabilities (0 by default: never applied) and ranges of the crop augmentations.

    Placeholders: a probability 0 is the quantity itself, not "unset" (docs/training.md)."""

    speed: float = 0.0
    speed_range: tuple[float, float] = (0.88, 1.12)
    eq: float = 0.0
    eq_db: float = 6.0
    reverb: float = 0.0
    rt60: tuple[float, float] = (0.1, 0.5)
    reverb_wet: tuple[float, float] = (0.2, 0.6)

    def __post_init__(self) -> None:
        for name in ("speed", "eq", "reverb"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"augment.{name} is a probability, got {getattr(self, name)}")
        low, high = self.speed_range
        if not 0.5 <= low <= high <= 2.0:
            raise InputError(f"augment.speed_range must be within [0.5, 2], got {low}, {high}")
        if not 0.0 < self.rt60[0] <= self.rt60[1] <= 3.0:
            raise InputError(f"augment.rt60 must be within (0, 3] s, got {self.rt60}")

    @property
    def enabled(self) -> bool:
        return self.speed > 0 or self.eq > 0 or self.reverb > 0


def speed_factor(config: AugmentConfig, rng: np.random.Generator) -> float:
    """The speed factor of one crop (1.0 when not perturbed); draw it before reading, since a
    crop sped up by f needs f times as many source samples."""
    if config.speed > 0 and rng.random() < config.speed:
        return float(rng.uniform(*config.speed_range))
    return 1.0


def change_speed(audio: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """[T] -> [~T / factor]: played `factor` times faster (pitch and formants x factor)."""
    if factor == 1.0:
        return audio
    return audio_io.resample(audio, round(sample_rate * factor), sample_rate)


def peaking_eq(audio: np.ndarray, sample_rate: int, rng: np.random.Generator,
               max_db: float, bands: int = 3) -> np.ndarray:
    """Three random peaking biquads (RBJ cookbook): centre 150 Hz - 5 kHz (log-uniform),
    gain in [-max_db, max_db], Q in [0.5, 2]."""
    from scipy.signal import lfilter  # here, not at import: scipy.signal costs ~0.7 s

    out = np.asarray(audio, dtype=np.float64)
    for _ in range(bands):
        centre = float(np.exp(rng.uniform(np.log(150.0), np.log(min(5000.0, sample_rate / 3)))))
        gain = 10.0 ** (rng.uniform(-max_db, max_db) / 40.0)
        w = 2 * np.pi * centre / sample_rate
        alpha = np.sin(w) / (2 * rng.uniform(0.5, 2.0))
        b = [1 + alpha * gain, -2 * np.cos(w), 1 - alpha * gain]
        a = [1 + alpha / gain, -2 * np.cos(w), 1 - alpha / gain]
        out = lfilter(b, a, out)
    return out.astype(np.float32)


def room_response(sample_rate: int, rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A synthetic room impulse response [L]: a unit direct path, then after 2-10 ms
    exponentially decaying noise (-60 dB at `rt60` s), low-passed a little by the air."""
    from scipy.signal import lfilter

    length = int(rt60 * sample_rate)
    delay = int(rng.uniform(0.002, 0.01) * sample_rate)
    t = np.arange(length - delay) / sample_rate
    tail = rng.standard_normal(t.size) * 10.0 ** (-3.0 * t / rt60)
    tail = lfilter([0.5, 0.5], [1.0], tail)  # a gentle high-frequency roll-off
    response = np.zeros(length)
    response[0] = 1.0
    response[delay:] = tail * 0.3
    return response


def reverberate(audio: np.ndarray, sample_rate: int, rng: np.random.Generator,
                rt60_range: tuple[float, float], wet_range: tuple[float, float]) -> np.ndarray:
    """`audio` in a random synthetic room, mixed `wet` of the reverberant and the dry signal,
    same length and peak as the input."""
    from scipy.signal import fftconvolve

    response = room_response(sample_rate, rng, float(rng.uniform(*rt60_range)))
    wet = fftconvolve(audio, response)[: audio.size]
    wet *= np.abs(audio).max() / max(np.abs(wet).max(), 1e-9)
    mix = float(rng.uniform(*wet_range))
    return ((1.0 - mix) * audio + mix * wet).astype(np.float32)


def augment(audio: np.ndarray, config: AugmentConfig, sample_rate: int,
            rng: np.random.Generator) -> np.ndarray:
    """EQ and reverb (each with its probability) of a crop [T] (speed is applied at read time:
    see `speed_factor`). The peak level is kept, and never exceeds 1."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak < 1e-8:
        return audio
    out = audio
    if config.eq > 0 and rng.random() < config.eq:
        out = peaking_eq(out, sample_rate, rng, config.eq_db)
    if config.reverb > 0 and rng.random() < config.reverb:
        out = reverberate(out, sample_rate, rng, config.rt60, config.reverb_wet)
    if out is audio:
        return audio
    out_peak = max(float(np.abs(out).max()), 1e-9)
    return (out * min(peak / out_peak, 1.0 / out_peak)).astype(np.float32)
