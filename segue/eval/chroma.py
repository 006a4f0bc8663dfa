"""Pitch-class similarity for music continuations: does a continuation stay in its prompt's key?

    encoder = ChromaEncoder()
    encoder.embed(audio, 16000)     # [T] -> [12]: the mean chroma, centred, unit norm

It has `SpeakerEncoder`'s interface (`embed`, `label`), so `segue.eval.e2e` scores piano
continuations with it (`segue eval e2e --similarity chroma`): the cosine of two centred
pitch-class profiles is their correlation, the measure of key-finding (Krumhansl), so a
continuation in its prompt's key scores like the piece's own next seconds, one in another key
like another piece. Resemblyzer, a speech model, says little about piano.
"""

from __future__ import annotations

import numpy as np

from segue.errors import InputError
from segue.eval.speaker import _require

SAMPLE_RATE = 16000


class ChromaEncoder:
    """Mean chroma (librosa's `chroma_stft`) of a signal, centred and normalised: [12]."""

    label = "pitch-class similarity (chroma correlation)"

    def __init__(self, n_fft: int = 4096, hop_length: int = 1024):
        self.n_fft, self.hop_length = n_fft, hop_length

    def embed(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Audio [T] (or [1, T]) -> [12] unit vector (zeros for silent audio)."""
        librosa = _require("librosa", "librosa")
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        if x.size == 0 or not np.isfinite(x).all():
            raise InputError(f"cannot embed audio of {x.size} samples with NaN/inf or none")
        if float(np.abs(x).max()) < 1e-6:
            return np.zeros(12, dtype=np.float32)
        n_fft = min(self.n_fft, 1 << int(np.log2(max(x.size, 64))))
        chroma = librosa.feature.chroma_stft(
            y=x,
            sr=sample_rate,
            n_fft=n_fft,
            hop_length=min(self.hop_length, n_fft // 4),
            tuning=0.0,
        )  # [12, frames], each frame's maximum 1
        profile = chroma.mean(axis=1)
        profile = profile - profile.mean()
        norm = float(np.linalg.norm(profile))
        return (profile / norm if norm > 0 else profile).astype(np.float32)
