"""Is this recording speech? A cheap test for corpora gathered from packages of sounds.

`non_speech_reason` tells silence, short pure tones (beeps, two-tone chimes) and unvoiced sound
(hiss, noise, whispers) from speech, on audio that `highpass` has cleared of DC and rumble.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.signal import butter, sosfilt

from segue import audio as audio_io

SAMPLE_RATE = 16000
HIGHPASS_HZ = 40.0


@functools.lru_cache(maxsize=4)
def _highpass(sample_rate: int, cutoff: float) -> np.ndarray:
    return butter(2, cutoff, "highpass", fs=sample_rate, output="sos")


def highpass(audio: np.ndarray, sample_rate: int = SAMPLE_RATE,
             cutoff: float = HIGHPASS_HZ) -> np.ndarray:
    """Remove DC and rumble below `cutoff` Hz (2nd-order Butterworth)."""
    audio = np.asarray(audio, dtype=np.float64)
    return sosfilt(_highpass(sample_rate, cutoff), audio - audio.mean()).astype(np.float32)


#: Frames of 30 ms; "active" frames are within 35 dB of the loudest.
_FRAME_S, _ACTIVE_DB = 0.03, -35.0
MIN_ACTIVE_S = 0.15
#: A pure tone: the strongest spectral peak (+-2 bins of a 1024-point FFT) holds this share of
#: the energy in most frames, at one or two frequencies only (beeps, two-tone chimes).
TONE_PEAK_SHARE, TONE_STABLE_SHARE, TONE_MAX_S = 0.9, 0.9, 1.0
#: Voiced frames: normalised autocorrelation above this at a lag of a 60-400 Hz pitch period.
VOICING_THRESHOLD, MIN_VOICED_SHARE = 0.5, 0.1


def voiced_share(frames: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Share of `frames` ([N, L] float) that are periodic at a speech pitch (60-400 Hz): the
    normalised autocorrelation peaks above VOICING_THRESHOLD at some lag in that range."""
    size = 1 << int(np.ceil(np.log2(2 * frames.shape[1])))
    centred = frames - frames.mean(axis=1, keepdims=True)
    power = np.abs(np.fft.rfft(centred, size, axis=1)) ** 2
    autocorrelation = np.fft.irfft(power, size, axis=1)[:, : frames.shape[1]]
    # Unbiased (divide by the overlap) so that long lags are not penalised.
    overlap = frames.shape[1] - np.arange(frames.shape[1])
    normalised = autocorrelation / overlap / (autocorrelation[:, :1] / frames.shape[1] + 1e-20)
    low, high = int(sample_rate / 400), min(int(sample_rate / 60), frames.shape[1] // 2)
    return float(np.mean(normalised[:, low:high].max(axis=1) > VOICING_THRESHOLD))


def non_speech_reason(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str | None:
    """Why `audio` ([T] float, high-passed) is not speech, or None when it passes.

    "silence": under 0.15 s within 35 dB of its loudest 30 ms frame (or digital silence);
    "tone": under 1 s of sound whose energy sits at one or two frequencies (beeps, chimes);
    "no voice": under 10 % of the active frames are periodic at a speech pitch (noise,
    hiss, clicks).
    """
    frame = round(_FRAME_S * sample_rate)
    n = audio.size // frame
    if n == 0 or audio_io.is_silent(audio):
        return "silence"
    frames = audio[: n * frame].reshape(n, frame).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    active = frames[rms >= rms.max() * 10.0 ** (_ACTIVE_DB / 20.0)]
    if len(active) * _FRAME_S < MIN_ACTIVE_S:
        return "silence"
    spectra = np.abs(np.fft.rfft(active * np.hanning(frame), 1024, axis=1)) ** 2
    peaks = spectra.argmax(axis=1)
    bins = np.arange(spectra.shape[1])
    near = np.abs(bins[None, :] - peaks[:, None]) <= 2
    share = float(np.median((spectra * near).sum(1) / (spectra.sum(1) + 1e-20)))
    counts = np.bincount(peaks)
    two_main = np.sort(counts)[-2:].sum() / len(peaks)  # frames at the 2 commonest peak bins
    stable = max(two_main, float(np.mean(np.abs(peaks - np.median(peaks)) <= 1)))
    if (share >= TONE_PEAK_SHARE and stable >= TONE_STABLE_SHARE
            and len(active) * _FRAME_S < TONE_MAX_S):
        return "tone"
    if voiced_share(active, sample_rate) < MIN_VOICED_SHARE:
        return "no voice"
    return None

