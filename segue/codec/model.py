"""The codec: audio <-> acoustic tokens. [B, T] audio at 16 kHz <-> codes [B, Q, T / hop]."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from segue.codec.config import CodecConfig
from segue.codec.modules import Decoder, Encoder, ISTFTDecoder, STFTEncoder
from segue.codec.quantizer import EMAVectorQuantizer, QuantizerOutput, ResidualVectorQuantizer
from segue.errors import InputError
from segue.pretrained import PretrainedMixin

#: Encoding and decoding run this many seconds at a time (with context): a 20-minute file costs
#: the memory of a short one (measured: docs/reliability.md).
WINDOW_SECONDS = 10.0


@dataclass
class CodecOutput:
    audio: torch.Tensor  # [B, 1, T'] reconstruction, T' = input length rounded up to the hop
    quantizer: QuantizerOutput


class Codec(nn.Module, PretrainedMixin):
    """SoundStream-style neural codec: Encoder -> ResidualVectorQuantizer -> Decoder (transposed
    convolutions, or an inverse-STFT head at the frame rate: `config.decoder`)."""

    config_class = CodecConfig

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        self.encoder: Encoder | STFTEncoder
        if config.encoder == "stft":
            self.encoder = STFTEncoder(
                config.hop_length,
                config.latent_dim,
                config.stft.dim,
                config.stft.layers,
                config.causal,
                config.stft.n_fft_hops,
            )
        else:
            self.encoder = Encoder(
                config.channels, config.strides, config.latent_dim, config.dilations, config.causal
            )
        self.quantizer = ResidualVectorQuantizer(
            config.latent_dim,
            config.n_codebooks,
            config.codebook_size,
            config.codebook_dim,
            dropout=config.quantizer_dropout,
            dead_code_threshold=config.dead_code_threshold,
            kind=config.quantizer,
        )
        self.decoder: Decoder | ISTFTDecoder
        if config.decoder == "istft":
            self.decoder = ISTFTDecoder(
                config.latent_dim,
                config.hop_length,
                config.istft.dim,
                config.istft.layers,
                config.causal,
                config.istft.n_fft_hops,
            )
        else:
            self.decoder = Decoder(
                config.channels, config.strides, config.latent_dim, config.dilations, config.causal
            )

    def saved_state(self) -> dict[str, torch.Tensor]:
        """The state dict less each EMA level's `embed_sum`, which loading rebuilds (2 MB of
        the shipped codec's 24; training checkpoints keep it, for exact resumes)."""
        derived = {
            f"{name}.{key}"
            for name, module in self.named_modules()
            if isinstance(module, EMAVectorQuantizer)
            for key in module.DERIVED
        }
        return {k: v for k, v in self.state_dict().items() if k not in derived}

    # The acoustic-tokenizer interface, shared with `segue.codec.hf.PretrainedCodec`.
    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def n_codebooks(self) -> int:
        return self.config.n_codebooks

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def n_coarse(self) -> int:
        return self.config.n_coarse

    def _as_batch(self, audio: torch.Tensor) -> torch.Tensor:
        """[T], [B, T] or [B, 1, T] -> [B, 1, T padded to a multiple of the hop]."""
        if audio.dim() == 1:
            audio = audio[None, None]
        elif audio.dim() == 2:
            audio = audio[:, None]
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise InputError(
                f"expected mono audio [T], [B, T] or [B, 1, T], got {tuple(audio.shape)}"
            )
        if audio.shape[-1] == 0:
            raise InputError("cannot encode empty audio")
        pad = (-audio.shape[-1]) % self.hop_length
        return nn.functional.pad(audio, (0, pad))

    def forward(self, audio: torch.Tensor, n_quantizers: int | None = None) -> CodecOutput:
        """Reconstruct audio through the quantizer (training uses quantizer dropout)."""
        x = self._as_batch(audio)
        quantized = self.quantizer(self.encoder(x), n_quantizers)
        return CodecOutput(self.decoder(quantized.quantized), quantized)

    def _windows(self, frames: int, window_seconds: float | None, margin: int):
        """[(start, end)] frame windows of about `window_seconds` covering `frames` (one window
        when it fits), each to be computed with `margin` frames of context on both sides."""
        if window_seconds is None:
            return [(0, frames)]
        size = max(1, round(window_seconds * self.frame_rate))
        if frames <= size + 2 * margin:
            return [(0, frames)]
        return [(start, min(frames, start + size)) for start in range(0, frames, size)]

    @torch.no_grad()
    def encode(
        self,
        audio: torch.Tensor,
        n_quantizers: int | None = None,
        *,
        window_seconds: float | None = WINDOW_SECONDS,
        progress: bool = False,
    ) -> torch.Tensor:
        """Audio [T] / [B, T] / [B, 1, T] -> codes [B, Q, ceil(T / hop)] (int64).

        Long audio is encoded `window_seconds` at a time, each window with the encoder's whole
        receptive field of context on both sides: the codes are those of one pass over all of
        it (the convolutions see the same samples), in bounded memory (None: one pass).
        """
        x = self._as_batch(audio)
        hop = self.hop_length
        frames = x.shape[-1] // hop
        margin = -(-self.encoder.context_samples // hop) + 1
        was_training = self.training
        self.eval()
        try:
            pieces = []
            windows = self._windows(frames, window_seconds, margin)
            for start, end in tqdm(windows, desc="encoding", unit="window",
                                   disable=not progress or len(windows) == 1):
                left, right = max(0, start - margin), min(frames, end + margin)
                latents = self.encoder(x[..., left * hop : right * hop])
                latents = latents[..., start - left : start - left + end - start]
                pieces.append(self.quantizer(latents, n_quantizers).codes)
            return torch.cat(pieces, dim=-1)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def decode(
        self,
        codes: torch.Tensor,
        *,
        start: int = 0,
        window_seconds: float | None = WINDOW_SECONDS,
        progress: bool = False,
    ) -> torch.Tensor:
        """Codes [B, Q', F] (any Q' <= Q, coarse first) -> audio [B, (F - start) * hop].

        Long code sequences are decoded `window_seconds` at a time with the decoder's receptive
        field of context on both sides: the same audio as one pass, in bounded memory. `start`
        skips the audio of the first frames (e.g. a prompt's, which the caller has): the frames
        before it are read as context only, so the rest is the audio a whole decode gives.
        """
        if codes.dim() != 3:
            raise InputError(f"expected codes [B, Q, F], got {tuple(codes.shape)}")
        hop, frames = self.hop_length, codes.shape[-1]
        if not 0 <= start < frames:
            raise InputError(f"start frame {start} is outside the {frames} frames of the codes")
        margin = math.ceil(self.decoder.context_frames) + 1
        first = max(0, start - margin)  # codes before this shape no decoded sample
        latents = self.quantizer.decode(codes[..., first:].long())
        frames, start = frames - first, start - first
        windows = self._windows(frames - start, window_seconds, margin)
        pieces = []
        for begin, end in tqdm([(b + start, e + start) for b, e in windows], desc="decoding",
                               unit="window", disable=not progress or len(windows) == 1):
            left, right = max(0, begin - margin), min(frames, end + margin)
            audio = self.decoder(latents[..., left:right])[:, 0]
            pieces.append(audio[:, (begin - left) * hop : (end - left) * hop])
        return torch.cat(pieces, dim=-1)
