"""The semantic model: audio [B, T] at 16 kHz -> 25 Hz features and masked-prediction logits.

    log-mel (100 Hz) -> conv x4 subsampling (25 Hz) -> [mask embedding on masked frames]
    -> + conv position embedding -> N pre-LN transformer blocks (segue.nn) -> LayerNorm
    -> cosine head

`features(audio, lengths, layer)` runs only the first `layer` blocks (what k-means tokens need);
`forward(audio, lengths, mask)` gives logits [B, F, n_classes] for training.
"""

from __future__ import annotations

import torch
from torch import nn

from segue.errors import InputError
from segue.nn import Block
from segue.pretrained import PretrainedMixin
from segue.semantic.config import SemanticConfig
from segue.semantic.masking import frame_mask
from segue.semantic.modules import CosineHead, FrontEnd, PositionalConv


class SemanticModel(nn.Module, PretrainedMixin):
    """HuBERT-style encoder at 25 Hz (see the module docstring)."""

    config_class = SemanticConfig

    def __init__(self, config: SemanticConfig):
        super().__init__()
        self.config = config
        self.front = FrontEnd(
            config.sample_rate,
            config.n_mels,
            config.n_fft,
            config.mel_hop,
            config.conv_channels,
            config.dim,
            config.dropout,
            config.mel_cmn,
        )
        self.mask_embedding = nn.Parameter(torch.rand(config.dim))
        self.position = PositionalConv(config.dim, config.pos_conv_kernel, config.pos_conv_groups)
        self.blocks = nn.ModuleList(  # HuBERT's: biases, exact GELU, dropout in the MLP too
            Block(
                config.dim,
                config.n_heads,
                mlp_ratio=config.ffn_mult,
                bias=True,
                gelu="none",
                dropout=config.dropout,
                attn_dropout=config.attention_dropout,
                mlp_dropout=config.dropout,
            )
            for _ in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(config.dim)
        self.head = CosineHead(
            config.dim, config.head_dim, config.n_classes, config.logit_temperature
        )

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid samples [B] -> valid frames [B]: ceil(samples / hop_length)."""
        return torch.div(lengths + self.hop_length - 1, self.hop_length, rounding_mode="floor")

    def features(
        self,
        audio: torch.Tensor,
        lengths: torch.Tensor | None = None,
        layer: int | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states after block `layer` (0: the block input; None: all blocks).

        audio [B, T] (zero-padded past `lengths` [B]); mask bool [B, F] or None.
        Returns (states [B, F, dim], frame_lengths [B]); padding frames hold garbage.
        """
        layer = self.config.n_layers if layer is None else layer
        if not 0 <= layer <= self.config.n_layers:
            raise InputError(f"layer must be in [0, {self.config.n_layers}], got {layer}")
        x, attn_mask, frame_lengths = self._embed(audio, lengths, mask)
        for block in self.blocks[:layer]:
            x = block(x, mask=attn_mask)
        return x, frame_lengths

    def _embed(
        self, audio: torch.Tensor, lengths: torch.Tensor | None, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The first block's input [B, F, dim], its attention mask (None: no padding) and the
        valid frames [B]."""
        if audio.dim() == 1:
            audio = audio[None]
        if lengths is not None:  # whatever lies past a length is ignored: zero it
            lengths = torch.as_tensor(lengths, device=audio.device)
            audio = audio * frame_mask(lengths, audio.shape[-1]).to(audio.dtype)
        x = self.front(audio, lengths)
        frames = x.shape[1]
        if lengths is None:
            lengths = torch.full((x.shape[0],), audio.shape[-1], device=x.device)
        frame_lengths = self.frame_lengths(lengths)
        valid = frame_mask(frame_lengths, frames)
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_embedding.to(x.dtype), x)
        padded = not bool(valid.all())
        if padded:  # keep padding out of the convolution and the attention
            x = x * valid[..., None]
        x = self.position(x)
        attn_mask = valid[:, None, None, :] if padded else None
        return x, attn_mask, frame_lengths

    def forward(
        self,
        audio: torch.Tensor,
        lengths: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        return_layer: int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Masked-prediction logits [B, F, n_classes] of audio [B, T]; with `return_layer` L,
        (logits, states after block L [B, F, dim]) from the same pass (what a loss on the
        tokenizer layer needs under DDP, which sees only `forward`)."""
        x, attn_mask, _ = self._embed(audio, lengths, mask)
        kept = x if return_layer == 0 else None
        for index, block in enumerate(self.blocks, start=1):
            x = block(x, mask=attn_mask)
            if index == return_layer:
                kept = x
        logits = self.head(self.norm(x))
        if return_layer is None:
            return logits
        if kept is None:
            raise InputError(f"return_layer must be in [0, {self.config.n_layers}]")
        return logits, kept
