"""Convolutional encoder and decoder of the codec (SoundStream / EnCodec / DAC family).

Encoder: conv -> [residual units (dilations 1, 3, 9) -> strided conv, channels x2] per stride ->
conv to the latent. Decoder mirrors it with transposed convs. Snake activations (DAC) model the
periodic structure of audio well at small sizes. With `causal=True` all padding is on the left, so
the codec can stream; otherwise it is split evenly.

Length contract: for input [B, 1, T] with T a multiple of hop = prod(strides), the encoder gives
[B, latent_dim, T // hop] and the decoder turns [B, latent_dim, F] back into [B, 1, F * hop].

Two encoders and two decoders keep that contract: `Encoder` / `Decoder` stride down and up with
convolutions (SoundStream); `STFTEncoder` reads STFT frames and `ISTFTDecoder` predicts each
frame's spectrum, which an inverse STFT turns into samples (Vocos): no convolution of theirs runs
at the sample rate.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from segue.features import compress


class Snake(nn.Module):
    """x + sin^2(alpha * x) / alpha, with a learned alpha per channel. [B, C, T] -> [B, C, T]."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.view(1, -1, *(1,) * (x.dim() - 2))  # [1, C, 1] or [1, C, 1, 1]
        if torch.is_grad_enabled():
            return x + torch.sin(alpha * x).pow(2) / (alpha + 1e-9)
        # Without autograd: the same terms in one buffer, in place (half the time on a CPU).
        return torch.mul(x, alpha).sin_().square_().div_(alpha + 1e-9).add_(x)


def conv_padding(total: int, causal: bool) -> tuple[int, int]:
    """(left, right) padding of `total` samples: all on the left when causal, else split with
    the extra one on the left."""
    return (total, 0) if causal else ((total + 1) // 2, total // 2)


class PaddedConv1d(nn.Module):
    """Weight-normalised Conv1d whose output has length ceil(T / stride), causal or centred.

    Takes [B, C, T], or [B, C, 1, T] (the 2-D layout of `run_channels_last`).
    """

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
        self.padding = conv_padding(total, causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, (left, right) = self.conv, self.padding
        weight, two_d = conv.weight, x.dim() == 4
        if left != right:  # causal or odd: pad explicitly
            x = nn.functional.pad(x, (left, right))
        padding = left if left == right else 0  # even: the convolution pads (no copy of x)
        if two_d:
            return nn.functional.conv2d(x, weight[:, :, None], conv.bias, (1, conv.stride[0]),
                                        (0, padding), (1, conv.dilation[0]))
        return nn.functional.conv1d(x, weight, conv.bias, conv.stride, padding, conv.dilation)


class PaddedConvTranspose1d(nn.Module):
    """Weight-normalised ConvTranspose1d whose output has length exactly T * stride.

    Takes [B, C, T], or [B, C, 1, T] (the 2-D layout of `run_channels_last`).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, causal: bool = False):
        super().__init__()
        self.conv = weight_norm(nn.ConvTranspose1d(c_in, c_out, kernel, stride=stride))
        self.stride = stride
        extra = kernel - stride
        self.trim = (0, extra) if causal else ((extra + 1) // 2, extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x) if x.dim() == 3 else self._polyphase(x)
        left, right = self.trim
        return y[..., left : y.shape[-1] - right]

    def _polyphase(self, x: torch.Tensor) -> torch.Tensor:
        """The transposed convolution of x [B, C_in, 1, T] (channels-last) as a plain one.

        With kernel K = m x stride s, output sample n s + p is sum_j W[:, :, p + j s] x[n - j]:
        one convolution of m taps to s x C_out channels ordered (p, c), whose channels-last
        memory [B, T + m - 1, s, C_out] already is the output [B, C_out, 1, (T + m - 1) s].
        oneDNN sets a convolution up several times faster than a transposed one (~0.1 s of a
        10 s decode in a fresh process); the arithmetic is the same.
        """
        conv, s = self.conv, self.stride
        weight = conv.weight  # [C_in, C_out, K]
        c_in, c_out, kernel = weight.shape
        if kernel % s:
            return nn.functional.conv_transpose2d(x, weight[:, :, None], conv.bias, (1, s))
        m = kernel // s
        taps = weight.view(c_in, c_out, m, s).flip(2)  # [C_in, C_out, tap k, phase p]
        taps = taps.permute(3, 1, 0, 2).reshape(s * c_out, c_in, 1, m)
        bias = None if conv.bias is None else conv.bias.repeat(s)
        y = nn.functional.conv2d(x, taps, bias, padding=(0, m - 1))  # [B, s C_out, 1, T + m - 1]
        batch, frames = y.shape[0], y.shape[-1]
        y = y.permute(0, 2, 3, 1).reshape(batch, 1, frames * s, c_out)  # a view: channels last
        return y.permute(0, 3, 1, 2)  # [B, C_out, 1, (T + m - 1) s]


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
        return run_channels_last(self.net, audio)

    @property
    def context_samples(self) -> int:
        """Input samples one latent frame depends on (see `encoder_context`)."""
        return encoder_context(self)


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
        return run_channels_last(self.net, latents)

    @property
    def context_frames(self) -> float:
        """Latent frames one output sample depends on (an upper bound; see `decoder_context`)."""
        return decoder_context(self)


def run_channels_last(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """net(x) for x [B, C, T]; without autograd on a CPU, as 2-D convolutions over [B, C, 1, T]
    in channels-last memory.

    oneDNN's convolutions over few channels and many samples are fastest channels-last, and
    its transposed ones are 2-3x faster there than PyTorch's 1-D path: the SoundStream decoder
    runs 1.5x faster on a CPU thread with the same numbers (to float rounding; tests/codec).
    Training keeps the plain 1-D layout.
    """
    if torch.is_grad_enabled() or x.device.type != "cpu":
        return net(x)
    y = net(x[:, :, None].contiguous(memory_format=torch.channels_last))  # [B, C', 1, T']
    return y[:, :, 0].contiguous()


class ConvNeXtBlock(nn.Module):
    """x + scale * pwconv(gelu(pwconv(norm(dwconv_k7(x))))) at one rate. [B, C, F] -> [B, C, F].

    ConvNeXt's block as Vocos uses it; `causal` pads the depthwise convolution on the left only.
    """

    def __init__(self, dim: int, hidden: int, layer_scale: float, causal: bool, kernel: int = 7):
        super().__init__()
        self.padding = conv_padding(kernel - 1, causal)
        self.dwconv = nn.Conv1d(dim, dim, kernel, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.scale = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(nn.functional.pad(x, self.padding)).transpose(1, 2)  # [B, F, C]
        h = self.down(nn.functional.gelu(self.up(self.norm(h))))
        return x + (self.scale * h).transpose(1, 2)


def inverse_stft(spec: torch.Tensor, hop: int, window: torch.Tensor, causal: bool) -> torch.Tensor:
    """Overlap-add inverse STFT of [B, n_fft // 2 + 1, F] complex frames -> [B, F * hop] samples.

    Each frame is inverse-FFT'd, windowed, overlap-added and divided by the summed squared window.
    Of the (F - 1) * hop + n_fft samples, n_fft - hop are trimmed: half on each side ("same"
    padding, Vocos), or all on the right when `causal` (frame f then reaches samples up to
    (f + 1) * hop only).
    """
    n_fft, frames = window.shape[0], spec.shape[-1]
    chunks = torch.fft.irfft(spec, n=n_fft, dim=1) * window[:, None]  # [B, n_fft, F]
    length = (frames - 1) * hop + n_fft
    fold = dict(output_size=(1, length), kernel_size=(1, n_fft), stride=(1, hop))
    audio = nn.functional.fold(chunks, **fold)[:, 0, 0]  # [B, length]
    envelope = nn.functional.fold(window.square()[None, :, None].expand(1, -1, frames), **fold)
    audio = audio / envelope[:, 0, 0].clamp_min(1e-11)
    extra = n_fft - hop
    left = 0 if causal else extra // 2
    return audio[:, left : left + frames * hop]


class FrameNet(nn.Module):
    """conv_k7 -> LayerNorm -> ConvNeXt blocks -> LayerNorm, all at one rate. [B, C_in, F] ->
    [B, F, dim] (channels last, ready for a linear head)."""

    def __init__(self, c_in: int, dim: int, layers: int, causal: bool, kernel: int = 7):
        super().__init__()
        self.kernel = kernel
        self.padding = conv_padding(kernel - 1, causal)
        self.embed = nn.Conv1d(c_in, dim, kernel)
        self.norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(dim, 3 * dim, 1.0 / max(layers, 1), causal, kernel)
            for _ in range(layers)
        )
        self.final_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(nn.functional.pad(x, self.padding))  # [B, dim, F]
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            h = block(h)
        return self.final_norm(h.transpose(1, 2))  # [B, F, dim]

    @property
    def reach(self) -> int:
        """Frames on each side that one output frame can see (the convolutions' extent)."""
        return (self.kernel - 1) * (1 + len(self.blocks))


class STFTEncoder(nn.Module):
    """[B, 1, T] audio -> [B, latent_dim, T // hop] latents, from STFT frames at the frame rate.

    Frame f is the n_fft = `n_fft_hops` x hop window ending at sample (f + 1) * hop (causal) or
    centred on hop f ("same"), as power-law compressed real and imaginary parts (|S|^0.3 with
    S's phase: quiet bins count, phase is kept); a `FrameNet` and a linear map give the latent.
    """

    def __init__(
        self, hop: int, latent_dim: int, dim: int, layers: int, causal: bool, n_fft_hops: int = 4
    ):
        super().__init__()
        self.hop, self.causal = hop, causal
        n_fft = n_fft_hops * hop
        self.net = FrameNet(n_fft + 2, dim, layers, causal)
        self.out = nn.Linear(dim, latent_dim)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        n_fft = self.window.shape[0]
        extra = n_fft - self.hop
        pad = (extra, 0) if self.causal else (extra // 2, extra - extra // 2)
        x = nn.functional.pad(audio[:, 0].float(), pad)
        spec = torch.stft(x, n_fft, self.hop, window=self.window, center=False,
                          return_complex=True)  # [B, n_fft // 2 + 1, T // hop]
        spec = compress(spec, 0.3)  # |S|^0.3, phase kept
        features = torch.cat([spec.real, spec.imag], dim=1).to(audio.dtype)
        return self.out(self.net(features)).transpose(1, 2)  # [B, latent_dim, F]

    @property
    def context_samples(self) -> int:
        """Input samples one latent frame depends on (an upper bound)."""
        return self.window.shape[0] + 2 * self.net.reach * self.hop


class ISTFTDecoder(nn.Module):
    """[B, latent_dim, F] latents -> [B, 1, F * hop] audio, all at the frame rate (Vocos).

    A `FrameNet` and a linear head give each frame's log-magnitude and phase for
    n_fft = `n_fft_hops` x hop; an inverse STFT overlaps them. Magnitude and phase are predicted
    explicitly, so the phase is something the losses can pin down rather than an accident of
    upsampling.
    """

    def __init__(
        self, latent_dim: int, hop: int, dim: int, layers: int, causal: bool, n_fft_hops: int = 4
    ):
        super().__init__()
        self.hop, self.causal = hop, causal
        n_fft = n_fft_hops * hop
        self.net = FrameNet(latent_dim, dim, layers, causal)
        self.head = nn.Linear(dim, n_fft + 2)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        h = self.head(self.net(latents)).transpose(1, 2)  # [B, n_fft + 2, F]
        log_magnitude, phase = h.float().chunk(2, dim=1)  # [B, n_fft // 2 + 1, F] each
        magnitude = torch.exp(log_magnitude).clamp(max=1e2)
        spec = torch.polar(magnitude, phase)
        return inverse_stft(spec, self.hop, self.window, self.causal)[:, None].to(latents.dtype)

    @property
    def context_frames(self) -> float:
        """Latent frames one output sample depends on: the convolutions' reach plus the frames
        whose windows overlap it (an upper bound)."""
        return self.net.reach + self.window.shape[0] / self.hop + 1


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
