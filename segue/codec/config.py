"""Codec configuration: one dataclass, two presets (`audiolm` as in the paper, `tiny` for CPU)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Literal

from segue.errors import InputError


@dataclass
class DiscriminatorConfig:
    """Multi-period (waveform) + multi-resolution STFT discriminators, as in HiFi-GAN / DAC."""

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    period_channels: int = 32
    stft_windows: tuple[int, ...] = (2048, 1024, 512)
    stft_channels: int = 32


@dataclass
class SpectralConfig:
    """A frame-rate network around an STFT: the inverse-STFT decoder (`decoder="istft"`, Vocos)
    or the STFT encoder (`encoder="stft"`), ConvNeXt blocks at the token frame rate."""

    dim: int = 256
    layers: int = 6
    n_fft_hops: int = 4  # n_fft = 4 x hop: each frame's window spans four hops


@dataclass
class LossConfig:
    """Loss weights (DAC's balance) and the generator-only warm-up before adversarial training."""

    mel_windows: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
    mel_bins: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
    mel_weight: float = 15.0
    adversarial_weight: float = 1.0
    feature_matching_weight: float = 2.0
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0
    residual_weight: float = 1.0  # each RVQ level must approximate its residual (see quantizer)
    # L1 on the waveform (EnCodec's time-domain term): mel and adversarial losses leave the phase
    # free, and a codec whose output is uncorrelated with its input scores PESQ ~1.1 at STOI 0.8.
    waveform_weight: float = 0.0
    # L1 between power-law compressed complex STFTs (|S|^0.3 with S's phase) at these windows: a
    # phase-sensitive spectral term, as speech enhancement uses; 0 turns it off.
    complex_stft_weight: float = 0.0
    complex_stft_windows: tuple[int, ...] = (256, 512, 1024)
    discriminator_warmup_steps: int = 0


@dataclass
class CodecConfig:
    """A SoundStream-style codec: conv encoder -> residual VQ -> conv decoder.

    Frame rate = sample_rate / prod(strides); bitrate = n_codebooks * log2(codebook_size) * rate.
    The first `n_coarse` RVQ levels are AudioLM's coarse tokens, the rest are fine tokens.
    """

    sample_rate: int = 16000
    channels: int = 32
    strides: tuple[int, ...] = (2, 4, 5, 8)
    latent_dim: int = 256
    dilations: tuple[int, ...] = (1, 3, 9)
    causal: bool = False
    # "conv": strided convolutions from the sample rate down (SoundStream; old bundles);
    # "stft": ConvNeXt blocks on compressed complex STFT frames, all at the frame rate.
    encoder: Literal["conv", "stft"] = "conv"
    stft: SpectralConfig = field(default_factory=SpectralConfig)
    # "conv": transposed convolutions up to the sample rate (SoundStream; old bundles);
    # "istft": ConvNeXt blocks at the frame rate + inverse STFT (Vocos; cheap to run).
    decoder: Literal["conv", "istft"] = "conv"
    istft: SpectralConfig = field(default_factory=SpectralConfig)
    n_codebooks: int = 12
    codebook_size: int = 1024
    codebook_dim: int = 8
    n_coarse: int = 4
    quantizer: str = "factorized"  # "factorized" (DAC: cosine, low-dim) or "ema" (SoundStream)
    quantizer_dropout: float = 0.5
    dead_code_threshold: float = 0.1  # restart codes used < 10 % as often as uniform usage
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be >= {low}, got {getattr(self, name)}"
            for name, low in (
                ("sample_rate", 1),
                ("channels", 1),
                ("latent_dim", 1),
                ("n_codebooks", 1),
                ("codebook_size", 2),
                ("codebook_dim", 1),
            )
            if getattr(self, name) < low
        ]
        if not self.strides or any(s < 1 for s in self.strides):
            problems.append(f"strides must be >= 1 each, got {self.strides}")
        if any(d < 1 for d in self.dilations):
            problems.append(f"dilations must be >= 1 each, got {self.dilations}")
        if not 0.0 <= self.quantizer_dropout <= 1.0:
            problems.append(f"quantizer_dropout must be in [0, 1], got {self.quantizer_dropout}")
        if self.quantizer not in ("factorized", "ema"):
            problems.append(f"quantizer must be 'factorized' or 'ema', got {self.quantizer!r}")
        if self.decoder not in ("conv", "istft"):
            problems.append(f"decoder must be 'conv' or 'istft', got {self.decoder!r}")
        if self.encoder not in ("conv", "stft"):
            problems.append(f"encoder must be 'conv' or 'stft', got {self.encoder!r}")
        for name in ("stft", "istft"):
            part = getattr(self, name)
            if part.dim < 1 or part.layers < 0 or part.n_fft_hops < 1:
                problems.append(f"{name} needs dim >= 1, layers >= 0, n_fft_hops >= 1, got {part}")
        if problems:
            raise InputError("codec: " + "; ".join(problems))
        if not 1 <= self.n_coarse <= self.n_codebooks:
            raise InputError(
                f"n_coarse={self.n_coarse} must be in [1, n_codebooks={self.n_codebooks}]"
            )
        if self.sample_rate % self.hop_length:
            raise InputError(
                f"sample_rate {self.sample_rate} is not a multiple of the hop {self.hop_length}"
            )

    @property
    def hop_length(self) -> int:
        """Samples per token frame (product of the strides)."""
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def bitrate(self) -> float:
        """Bits per second at full bitrate (all codebooks)."""
        return self.n_codebooks * math.log2(self.codebook_size) * self.frame_rate


PRESETS: dict[str, CodecConfig] = {
    # The paper's SoundStream: 16 kHz, strides 2-4-5-8 -> 50 Hz, 12 x 1024 codes = 6 kbps.
    "audiolm": CodecConfig(
        channels=32,
        latent_dim=512,
        n_codebooks=12,
        n_coarse=4,
        # Vocos' decoder size; chosen from the `tiny` comparison (not measured at this size).
        decoder="istft",
        istft=SpectralConfig(dim=512, layers=8),
        discriminator=DiscriminatorConfig(period_channels=32, stft_channels=32),
        loss=LossConfig(discriminator_warmup_steps=0, complex_stft_weight=10.0),
    ),
    # Same frame rate and token layout, sized to train on a 2-core CPU in about half an hour.
    "tiny": CodecConfig(
        channels=12,
        latent_dim=64,
        n_codebooks=8,
        n_coarse=3,
        codebook_dim=8,
        # The inverse-STFT decoder: as good per step as the conv one (held-out PESQ 1.19 vs 1.20,
        # STOI 0.730 vs 0.747 after 2400 steps, docs/codec.md), 8x faster to decode, and a step
        # costs 0.48 s instead of 0.76 s.
        decoder="istft",
        # Running k-means codes beat the factorized ones at this budget (scripts/gpu/codec_sweep.sh:
        # valid mel 0.577 vs 0.599 after 750 steps; 0.337 vs 0.436 for the wider bundled codec).
        quantizer="ema",
        discriminator=DiscriminatorConfig(
            periods=(2, 3, 5), period_channels=8, stft_windows=(1024, 512, 256), stft_channels=8
        ),
        loss=LossConfig(
            mel_windows=(64, 128, 256, 512, 1024, 2048),
            mel_bins=(10, 20, 40, 80, 128, 256),
            # Reconstruction only for the default 2400 steps: on this CPU the discriminators
            # triple a step's cost (0.5 -> 1.5 s), and at equal steps the codec without them
            # scored better (held-out TTS PESQ 1.27 vs 1.23, real 1.42 vs 1.38; docs/codec.md).
            # A longer run (--max-steps) turns them on after step 2400.
            discriminator_warmup_steps=2400,
            # Held-out SI-SNR -9 dB instead of -46 dB and STOI 0.62 instead of 0.56 after 500
            # steps (scripts/gpu/codec_sweep.sh, variants w0 / w100); mel distance unchanged.
            waveform_weight=100.0,
            complex_stft_weight=10.0,
        ),
    ),
}


def preset(name: str, **overrides) -> CodecConfig:
    """A copy of a named preset, with top-level fields overridden."""
    if name not in PRESETS:
        raise InputError(f"unknown codec preset {name!r}; known: {sorted(PRESETS)}")
    return replace(copy.deepcopy(PRESETS[name]), **overrides)
