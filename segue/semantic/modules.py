"""Building blocks of the semantic model: log-mel front end with x4 conv subsampling, a
convolutional relative position embedding, HuBERT's head. (Its transformer blocks are
`segue.nn.Block`s.)"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segue.features import log_mel_spectrogram


class FrontEnd(nn.Module):
    """Audio [B, T] -> features [B, ceil(T / (4 * mel_hop)), dim].

    log-mel (power, n_mels bins, 100 Hz), normalised per frame over the bins (gain-invariant)
    and, with `cmn`, minus each utterance's mean over its valid frames (cepstral-mean style: the
    long-term spectral envelope, much of the voice's timbre, is removed), then two
    Conv1d(k=3, stride 2) + GELU and a linear projection + LayerNorm. The audio is zero-padded to
    a whole number of output frames, so frame f always covers samples [f * hop, (f + 1) * hop)
    plus context, the same alignment as the MFCC targets.
    """

    def __init__(
        self,
        sample_rate: int,
        n_mels: int,
        n_fft: int,
        mel_hop: int,
        channels: int,
        dim: int,
        dropout: float,
        cmn: bool = True,
    ):
        super().__init__()
        self.cmn = cmn
        self.sample_rate, self.n_mels, self.n_fft = sample_rate, n_mels, n_fft
        self.mel_hop = mel_hop
        self.hop = 4 * mel_hop
        self.mel_norm = nn.LayerNorm(n_mels, elementwise_affine=False)
        self.conv1 = nn.Conv1d(n_mels, channels, 3, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.proj = nn.Linear(channels, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Audio [B, T] (zero-padded past `lengths` [B]) -> [B, F, dim]."""
        frames = -(-audio.shape[-1] // self.hop)
        with torch.autocast(audio.device.type, enabled=False):  # log-mel in fp32 even under bf16
            mel = self._log_mel(audio.float(), frames, lengths)
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel))))  # [B, C, F]
        return self.dropout(self.norm(self.proj(x.transpose(1, 2))))

    def _log_mel(
        self, audio: torch.Tensor, frames: int, lengths: torch.Tensor | None
    ) -> torch.Tensor:
        """Normalised log-mel [B, n_mels, 4 * frames]."""
        audio = F.pad(audio, (0, frames * self.hop - audio.shape[-1]))
        mel = log_mel_spectrogram(
            audio,
            self.sample_rate,
            n_fft=self.n_fft,
            hop=self.mel_hop,
            n_mels=self.n_mels,
            power=2.0,
            eps=1e-8,
        )[..., : 4 * frames]  # [B, n_mels, 4F]: the centred STFT gives one frame too many
        mel = self.mel_norm(mel.transpose(1, 2)).transpose(1, 2)
        if self.cmn:
            if lengths is None:
                mel = mel - mel.mean(dim=-1, keepdim=True)
            else:
                valid_frames = torch.div(
                    lengths + self.mel_hop - 1, self.mel_hop, rounding_mode="floor"
                )
                valid = (
                    torch.arange(mel.shape[-1], device=mel.device)[None] < valid_frames[:, None]
                )[:, None].to(mel.dtype)
                mean = (mel * valid).sum(-1, keepdim=True) / valid.sum(-1, keepdim=True).clamp_min(
                    1
                )
                mel = mel - mean
        return mel


class PositionalConv(nn.Module):
    """wav2vec 2.0's relative position embedding: x + GELU(grouped Conv1d over time)."""

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, F, D] -> [B, F, D]."""
        return x + F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)


class CosineHead(nn.Module):
    """HuBERT's classifier: logits = cos(W x, e_c) / temperature for each cluster c.

    [B, F, D] -> [B, F, n_classes]. Comparing directions (not dot products) keeps the logits of
    rare clusters from collapsing, and the temperature sets how peaked the softmax can be.
    """

    def __init__(self, dim: int, head_dim: int, n_classes: int, temperature: float):
        super().__init__()
        self.proj = nn.Linear(dim, head_dim)
        self.labels = nn.Parameter(torch.randn(n_classes, head_dim) * head_dim**-0.5)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (
            F.normalize(self.proj(x), dim=-1)
            @ F.normalize(self.labels, dim=-1).T
            / (self.temperature)
        )
