"""Pretrained codecs from Hugging Face `transformers` (EnCodec, DAC) as acoustic tokenizers.

`PretrainedCodec.from_pretrained("facebook/encodec_24khz")` (or a local folder) gives an object
with the same tokenizer interface as segue's own `Codec`:
    sample_rate, frame_rate, n_codebooks, codebook_size, n_coarse,
    encode(audio [B, T]) -> codes [B, Q, F],  decode(codes [B, Q', F]) -> audio [B, T].
It needs `pip install segue[hf]`; nothing is downloaded unless you name a hub id and are online.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from segue.errors import InputError


class PretrainedCodec(nn.Module):
    """Adapter around a `transformers` EncodecModel or DacModel."""

    def __init__(self, model: nn.Module, n_coarse: int | None = None):
        super().__init__()
        self.model = model.eval()
        config = model.config
        self.kind = config.model_type
        if self.kind == "encodec":
            if config.chunk_length is not None:
                raise InputError(
                    "chunked EnCodec models (e.g. 48 kHz) are not supported; "
                    "use a model with chunk_length_s=None such as encodec_24khz"
                )
            self.bandwidth = float(config.target_bandwidths[-1])
            self.n_codebooks = int(config.num_quantizers)
        elif self.kind == "dac":
            self.n_codebooks = int(config.n_codebooks)
        else:
            raise InputError(f"unsupported codec model type {self.kind!r} (encodec or dac)")
        self.sample_rate = int(config.sampling_rate)
        self.codebook_size = int(config.codebook_size)
        self.hop_length = int(config.hop_length)
        self.frame_rate = self.sample_rate / self.hop_length
        # AudioLM's split: about a third of the levels are coarse (4 of 12 in the paper).
        self.n_coarse = n_coarse or max(1, self.n_codebooks // 3)
        if not 1 <= self.n_coarse <= self.n_codebooks:
            raise InputError(f"n_coarse={self.n_coarse} must be in [1, {self.n_codebooks}]")

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, n_coarse: int | None = None, **kwargs
    ) -> PretrainedCodec:
        """Load with `transformers.AutoModel` from a local folder or hub id."""
        try:
            from transformers import AutoModel
        except ImportError as error:
            raise ImportError("pretrained codecs need `pip install segue[hf]`") from error
        return cls(AutoModel.from_pretrained(str(name_or_path), **kwargs), n_coarse=n_coarse)

    @torch.no_grad()
    def encode(
        self,
        audio: torch.Tensor,
        n_quantizers: int | None = None,
        *,
        window_seconds: float | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Audio [T] / [B, T] / [B, 1, T] at `sample_rate` -> codes [B, Q, F] (int64).

        One pass (`window_seconds` and `progress` are accepted for the interface's sake: the
        model's own encode decides how it walks long audio)."""
        if audio.dim() == 1:
            audio = audio[None]
        if audio.dim() == 2:
            audio = audio[:, None]
        if self.kind == "encodec":
            bandwidth = self.bandwidth
            if n_quantizers is not None:
                bandwidth = (
                    n_quantizers
                    * self.frame_rate
                    * torch.log2(torch.tensor(float(self.codebook_size))).item()
                    / 1000
                )
            codes = self.model.encode(audio, bandwidth=bandwidth, return_dict=True).audio_codes
            return codes[0].long()  # [1 chunk, B, Q, F] -> [B, Q, F]
        return self.model.encode(
            audio, n_quantizers=n_quantizers, return_dict=True
        ).audio_codes.long()

    @torch.no_grad()
    def decode(
        self,
        codes: torch.Tensor,
        *,
        window_seconds: float | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Codes [B, Q', F] -> audio [B, T] (one pass, as `encode`)."""
        if codes.dim() != 3 or codes.shape[1] > self.n_codebooks:
            raise InputError(
                f"expected codes [B, Q<={self.n_codebooks}, F], got {tuple(codes.shape)}"
            )
        if self.kind == "encodec":
            audio = self.model.decode(codes[None], [None], return_dict=True).audio_values
            return audio[:, 0]
        return self.model.decode(audio_codes=codes, return_dict=True).audio_values
