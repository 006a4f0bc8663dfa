"""The codec: audio <-> acoustic tokens. [B, T] audio at 16 kHz <-> codes [B, Q, T / hop]."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from segue.codec.config import CodecConfig
from segue.codec.modules import Decoder, Encoder
from segue.codec.quantizer import QuantizerOutput, ResidualVectorQuantizer
from segue.pretrained import PretrainedMixin


@dataclass
class CodecOutput:
    audio: torch.Tensor  # [B, 1, T'] reconstruction, T' = input length rounded up to the hop
    quantizer: QuantizerOutput


class Codec(nn.Module, PretrainedMixin):
    """SoundStream-style neural codec: Encoder -> ResidualVectorQuantizer -> Decoder."""

    config_class = CodecConfig

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
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
        self.decoder = Decoder(
            config.channels, config.strides, config.latent_dim, config.dilations, config.causal
        )

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
            raise ValueError(
                f"expected mono audio [T], [B, T] or [B, 1, T], got {tuple(audio.shape)}"
            )
        if audio.shape[-1] == 0:
            raise ValueError("cannot encode empty audio")
        pad = (-audio.shape[-1]) % self.hop_length
        return nn.functional.pad(audio, (0, pad))

    def forward(self, audio: torch.Tensor, n_quantizers: int | None = None) -> CodecOutput:
        """Reconstruct audio through the quantizer (training uses quantizer dropout)."""
        x = self._as_batch(audio)
        quantized = self.quantizer(self.encoder(x), n_quantizers)
        return CodecOutput(self.decoder(quantized.quantized), quantized)

    @torch.no_grad()
    def encode(self, audio: torch.Tensor, n_quantizers: int | None = None) -> torch.Tensor:
        """Audio [T] / [B, T] / [B, 1, T] -> codes [B, Q, ceil(T / hop)] (int64)."""
        x = self._as_batch(audio)
        was_training = self.training
        self.eval()
        try:
            return self.quantizer(self.encoder(x), n_quantizers).codes
        finally:
            self.train(was_training)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, Q', F] (any Q' <= Q, coarse first) -> audio [B, F * hop]."""
        if codes.dim() != 3:
            raise ValueError(f"expected codes [B, Q, F], got {tuple(codes.shape)}")
        return self.decoder(self.quantizer.decode(codes.long()))[:, 0]
