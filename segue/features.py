"""Spectral features in torch: mel filterbank, log-mel spectrogram, MFCC.

Shared by the codec's reconstruction loss, the codec metrics and the semantic model's first
k-means targets, so all of them see the same, differentiable definition.
"""

from __future__ import annotations

import functools
import math

import torch

from segue.errors import InputError


def hz_to_mel(hz: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def _outside_inference_mode(build):
    """Cached tensor builders run with inference mode off: a tensor first built under
    `torch.inference_mode()` (tokenizing) would otherwise break backward in a later training
    of the same process ("Inference tensors cannot be saved for backward")."""

    @functools.wraps(build)
    def wrapper(*args, **kwargs):
        with torch.inference_mode(False):
            return build(*args, **kwargs)

    return wrapper


@functools.lru_cache(maxsize=32)
@_outside_inference_mode
def mel_filterbank(
    n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Triangular mel filters, [n_mels, n_fft // 2 + 1] float32 (cached; do not modify)."""
    f_max = f_max if f_max is not None else sample_rate / 2
    if n_mels > n_fft // 2:
        raise InputError(f"n_mels={n_mels} is too many for n_fft={n_fft}")
    bins = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(
        torch.linspace(
            hz_to_mel(f_min).item(), hz_to_mel(f_max).item(), n_mels + 2, dtype=torch.float64
        )
    )
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (center - lower)
    falling = (upper - bins[None]) / (upper - center)
    filters = torch.clamp(torch.minimum(rising, falling), min=0.0)
    # Slaney-style area normalisation: each filter has the same total energy.
    filters = filters * (2.0 / (upper - lower))
    return filters.float()


def stft_magnitude(audio: torch.Tensor, n_fft: int, hop: int, power: float = 1.0) -> torch.Tensor:
    """|STFT| of [B, T] audio -> [B, n_fft // 2 + 1, frames] (Hann window, centred, reflect)."""
    window = torch.hann_window(n_fft, device=audio.device, dtype=audio.dtype)
    spec = torch.stft(
        audio,
        n_fft,
        hop_length=hop,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    magnitude = spec.abs()
    return magnitude if power == 1.0 else magnitude.pow(power)


def compress(spec: torch.Tensor, power: float = 0.3) -> torch.Tensor:
    """Complex spectrogram -> |S|^power with S's phase (a power-law compression that keeps the
    phase: quiet bins count more, a wrong phase still costs). Same shape."""
    return spec * (spec.abs() + 1e-7).pow(power - 1)


def log_mel_spectrogram(
    audio: torch.Tensor,
    sample_rate: int,
    n_fft: int = 1024,
    hop: int = 256,
    n_mels: int = 80,
    power: float = 1.0,
    eps: float = 1e-5,
) -> torch.Tensor:
    """log(mel(|STFT|^power) + eps): [B, T] -> [B, n_mels, frames] ([T] -> [n_mels, frames])."""
    squeeze = audio.dim() == 1
    if squeeze:
        audio = audio[None]
    filters = mel_filterbank(n_fft, n_mels, sample_rate).to(audio.device, audio.dtype)
    mel = torch.matmul(filters, stft_magnitude(audio, n_fft, hop, power))
    out = torch.log(mel.clamp_min(eps))
    return out[0] if squeeze else out


@functools.lru_cache(maxsize=8)
@_outside_inference_mode
def dct_matrix(n_mfcc: int, n_mels: int) -> torch.Tensor:
    """Orthonormal DCT-II basis, [n_mfcc, n_mels]."""
    n = torch.arange(n_mels, dtype=torch.float64)
    k = torch.arange(n_mfcc, dtype=torch.float64)[:, None]
    basis = torch.cos(math.pi / n_mels * (n + 0.5) * k) * math.sqrt(2.0 / n_mels)
    basis[0] /= math.sqrt(2.0)
    return basis.float()


def mfcc(
    audio: torch.Tensor,
    sample_rate: int,
    n_mfcc: int = 13,
    hop: int = 160,
    n_fft: int = 400,
    n_mels: int = 40,
) -> torch.Tensor:
    """MFCCs of [B, T] audio -> [B, n_mfcc, frames] (HuBERT iteration 1 uses 39-d with deltas)."""
    logmel = log_mel_spectrogram(
        audio, sample_rate, n_fft=n_fft, hop=hop, n_mels=n_mels, power=2.0, eps=1e-10
    )
    return torch.matmul(dct_matrix(n_mfcc, n_mels).to(logmel), logmel)


def deltas(features: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Regression deltas along the last axis of [..., C, frames] (as in HTK/Kaldi)."""
    frames = features.shape[-1]
    padded = torch.nn.functional.pad(features, (width, width), mode="replicate")
    weights = torch.arange(1, width + 1, device=features.device, dtype=features.dtype)
    out = sum(
        w
        * (
            padded[..., width + i : width + i + frames]
            - padded[..., width - i : width - i + frames]
        )
        for i, w in zip(range(1, width + 1), weights)
    )
    return out / (2 * (weights**2).sum())
