"""Discriminators: multi-period on the waveform (HiFi-GAN) + multi-resolution STFT (DAC/EnCodec).

Each sub-discriminator returns (logits, feature maps); the feature maps feed the feature-matching
loss. Periodic discriminators see the waveform folded by a period p ([B, 1, T/p, p]), which exposes
pitch periodicity; STFT discriminators see complex spectrograms at several resolutions, which
exposes spectral detail and phase coherence.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from segue.codec.config import DiscriminatorConfig

Features = list[torch.Tensor]


def _conv2d(c_in: int, c_out: int, kernel, stride=1, padding=0) -> nn.Module:
    return weight_norm(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding))


class PeriodDiscriminator(nn.Module):
    """Waveform folded by `period` -> 2-D convs over (time / period, period)."""

    def __init__(self, period: int, channels: int):
        super().__init__()
        self.period = period
        widths = [1, channels, 4 * channels, 16 * channels, 32 * channels]
        self.convs = nn.ModuleList(
            _conv2d(widths[i], widths[i + 1], (5, 1), stride=(3, 1), padding=(2, 0))
            for i in range(len(widths) - 1)
        )
        self.convs.append(_conv2d(widths[-1], widths[-1], (5, 1), padding=(2, 0)))
        self.head = _conv2d(widths[-1], 1, (3, 1), padding=(1, 0))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, Features]:
        batch, _, length = audio.shape
        pad = (-length) % self.period
        x = nn.functional.pad(audio, (0, pad), mode="reflect" if pad < length else "constant")
        x = x.view(batch, 1, -1, self.period)
        features = []
        for conv in self.convs:
            x = nn.functional.leaky_relu(conv(x), 0.1)
            features.append(x)
        return self.head(x), features


class STFTDiscriminator(nn.Module):
    """Complex STFT (real, imag as 2 channels) -> 2-D convs over (frequency, time)."""

    def __init__(self, window: int, channels: int):
        super().__init__()
        self.window, self.hop = window, window // 4
        self.register_buffer("hann", torch.hann_window(window), persistent=False)
        self.convs = nn.ModuleList(
            [
                _conv2d(2, channels, (3, 9), padding=(1, 4)),
                _conv2d(channels, channels, (3, 9), stride=(2, 1), padding=(1, 4)),
                _conv2d(channels, channels, (3, 9), stride=(2, 1), padding=(1, 4)),
                _conv2d(channels, channels, (3, 9), stride=(2, 1), padding=(1, 4)),
                _conv2d(channels, channels, (3, 3), padding=(1, 1)),
            ]
        )
        self.head = _conv2d(channels, 1, (3, 3), padding=(1, 1))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, Features]:
        spec = torch.stft(
            audio[:, 0], self.window, self.hop, window=self.hann, center=True, return_complex=True
        )  # [B, F, frames]
        x = torch.stack([spec.real, spec.imag], dim=1)  # [B, 2, F, frames]
        features = []
        for conv in self.convs:
            x = nn.functional.leaky_relu(conv(x), 0.1)
            features.append(x)
        return self.head(x), features


class Discriminators(nn.Module):
    """All sub-discriminators: [B, 1, T] -> [(logits, features)], one per sub-discriminator."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.discriminators = nn.ModuleList(
            [PeriodDiscriminator(p, config.period_channels) for p in config.periods]
            + [STFTDiscriminator(w, config.stft_channels) for w in config.stft_windows]
        )

    def forward(self, audio: torch.Tensor) -> list[tuple[torch.Tensor, Features]]:
        return [d(audio) for d in self.discriminators]
