"""Convolutional encoder and decoder of the codec (SoundStream / EnCodec / DAC family).

Encoder: conv -> [residual units (dilations 1, 3, 9) -> strided conv, channels x2] per stride ->
conv to the latent. Decoder mirrors it with transposed convs. Snake activations (DAC) model the
periodic structure of audio well at small sizes. With `causal=True` all padding is on the left, so
the codec can stream; otherwise it is split evenly.

Length contract: for input [B, 1, T] with T a multiple of hop = prod(strides), the encoder gives
[B, latent_dim, T // hop] and the decoder turns [B, latent_dim, F] back into [B, 1, F * hop].
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class Snake(nn.Module):
    """x + sin^2(alpha * x) / alpha, with a learned alpha per channel. [B, C, T] -> [B, C, T]."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.sin(self.alpha * x).pow(2) / (self.alpha + 1e-9)


class PaddedConv1d(nn.Module):
    """Weight-normalised Conv1d whose output has length ceil(T / stride), causal or centred."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = False,
    ):
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(c_in, c_out, kernel, stride=stride, dilation=dilation))
        total = dilation * (kernel - 1) - (stride - 1)
        self.padding = (total, 0) if causal else ((total + 1) // 2, total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.pad(x, self.padding))


class PaddedConvTranspose1d(nn.Module):
    """Weight-normalised ConvTranspose1d whose output has length exactly T * stride."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, causal: bool = False):
        super().__init__()
        self.conv = weight_norm(nn.ConvTranspose1d(c_in, c_out, kernel, stride=stride))
        extra = kernel - stride
        self.trim = (0, extra) if causal else ((extra + 1) // 2, extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        left, right = self.trim
        return y[..., left : y.shape[-1] - right]


class ResidualUnit(nn.Module):
    """x + conv1x1(snake(conv_k7_dilated(snake(x))))."""

    def __init__(self, channels: int, dilation: int, causal: bool):
        super().__init__()
        self.block = nn.Sequential(
            Snake(channels),
            PaddedConv1d(channels, channels, 7, dilation=dilation, causal=causal),
            Snake(channels),
            PaddedConv1d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class Encoder(nn.Module):
    """[B, 1, T] audio -> [B, latent_dim, T // hop] latents."""

    def __init__(
        self,
        channels: int,
        strides: tuple[int, ...],
        latent_dim: int,
        dilations: tuple[int, ...],
        causal: bool,
    ):
        super().__init__()
        layers: list[nn.Module] = [PaddedConv1d(1, channels, 7, causal=causal)]
        width = channels
        for stride in strides:
            layers += [ResidualUnit(width, d, causal) for d in dilations]
            layers += [
                Snake(width),
                PaddedConv1d(width, 2 * width, 2 * stride, stride=stride, causal=causal),
            ]
            width *= 2
        layers += [Snake(width), PaddedConv1d(width, latent_dim, 3, causal=causal)]
        self.net = nn.Sequential(*layers)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.net(audio)


class Decoder(nn.Module):
    """[B, latent_dim, F] latents -> [B, 1, F * hop] audio in (-1, 1)."""

    def __init__(
        self,
        channels: int,
        strides: tuple[int, ...],
        latent_dim: int,
        dilations: tuple[int, ...],
        causal: bool,
    ):
        super().__init__()
        width = channels * 2 ** len(strides)
        layers: list[nn.Module] = [PaddedConv1d(latent_dim, width, 7, causal=causal)]
        for stride in reversed(strides):
            layers += [
                Snake(width),
                PaddedConvTranspose1d(width, width // 2, 2 * stride, stride, causal=causal),
            ]
            width //= 2
            layers += [ResidualUnit(width, d, causal) for d in dilations]
        layers += [Snake(width), PaddedConv1d(width, 1, 7, causal=causal), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.net(latents)


def encoder_context(encoder: nn.Module) -> int:
    """Input samples an encoder output depends on (its receptive field), from its convolutions
    in order: each adds (kernel - 1) x dilation x the stride product before it."""
    field, jump = 1, 1
    for module in encoder.modules():
        if isinstance(module, PaddedConv1d):
            conv = module.conv
            field += (conv.kernel_size[0] - 1) * conv.dilation[0] * jump
            jump *= conv.stride[0]
    return field


def decoder_context(decoder: nn.Module) -> float:
    """Latent frames an output sample of a decoder depends on (an upper bound), from its layers
    in order: a convolution at r samples per frame needs (kernel - 1) x dilation / r frames, a
    transposed one ceil(kernel / stride) / r, then multiplies r by its stride."""
    frames, rate = 1.0, 1
    for module in decoder.modules():
        if isinstance(module, PaddedConv1d):
            conv = module.conv
            frames += (conv.kernel_size[0] - 1) * conv.dilation[0] / rate
        elif isinstance(module, PaddedConvTranspose1d):
            conv = module.conv
            frames += -(-conv.kernel_size[0] // conv.stride[0]) / rate
            rate *= conv.stride[0]
    return frames
