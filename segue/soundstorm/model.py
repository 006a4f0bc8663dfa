"""SoundStorm's bidirectional transformer: codes [B, Q, T] + semantic [B, Ts] -> logits.

Each acoustic frame's input is the sum of its Q level embeddings (one table of K + 1 rows per
level, row K being MASK) and the embedding of the semantic token it is aligned to (token
t // ratio; PAD past the last one). Bidirectional `segue.nn.Block`s (full SDPA attention over
the valid frames, rotary positions), then one output head per level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segue.errors import InputError
from segue.nn import Block, init_residuals, init_weights, rotary_table
from segue.pretrained import PretrainedMixin
from segue.soundstorm.config import SoundStormConfig


class SoundStorm(nn.Module, PretrainedMixin):
    """Level + semantic embeddings -> n_layer bidirectional blocks -> LayerNorm -> Q heads."""

    config_class = SoundStormConfig

    def __init__(self, config: SoundStormConfig):
        super().__init__()
        if None in (config.n_levels, config.codebook_size, config.semantic_vocab):
            raise InputError(
                "SoundStormConfig.n_levels, codebook_size and semantic_vocab must be set "
                "(they come from the token shards)"
            )
        self.config = config
        q, k, d = config.n_levels, config.codebook_size, config.d_model
        self.levels = nn.Embedding(q * (k + 1), d)  # level l's table: rows l(K+1) .. l(K+1)+K
        self.semantic = nn.Embedding(config.semantic_vocab + 1, d)
        self.blocks = nn.ModuleList(
            Block(
                d,
                config.n_head,
                mlp_ratio=config.mlp_ratio,
                dropout=config.dropout,
                attn_dropout=config.attention_dropout,
            )
            for _ in range(config.n_layer)
        )
        self.norm = nn.LayerNorm(d, bias=False)
        self.heads = nn.Parameter(torch.empty(q, k, d))  # level l's output layer: heads[l]
        self.register_buffer("offsets", torch.arange(q) * (k + 1), persistent=False)  # [Q]
        table = rotary_table(config.max_frames, config.head_dim, config.rope_base)
        self.register_buffer("rope", table, persistent=False)  # [max_frames, hd/2, 2]
        self.apply(init_weights)
        nn.init.normal_(self.heads, std=0.02)
        init_residuals(self.blocks, config.n_layer)

    def align(self, semantic: torch.Tensor, n_frames: int) -> torch.Tensor:
        """semantic [B, Ts] -> [B, n_frames]: token t // ratio for frame t, PAD past the end."""
        r = self.config.ratio
        frames = semantic.repeat_interleave(r, dim=1)[:, :n_frames]
        if frames.shape[1] < n_frames:
            frames = F.pad(frames, (0, n_frames - frames.shape[1]), value=self.config.pad_id)
        return frames

    def hidden(
        self, codes: torch.Tensor, semantic: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """codes [B, Q, T] (MASK = K), semantic [B, Ts], lengths [B] valid frames -> [B, T, D]."""
        _, n_levels, length = codes.shape
        if n_levels != self.config.n_levels:
            raise InputError(f"codes have {n_levels} levels, the model {self.config.n_levels}")
        if length > self.config.max_frames:
            raise InputError(f"{length} frames is past max_frames={self.config.max_frames}")
        x = self.levels(codes + self.offsets[:, None]).sum(1)  # [B, T, D]
        x = x + self.semantic(self.align(semantic, length))
        x = F.dropout(x, self.config.dropout, self.training)
        mask = None
        if lengths is not None:
            mask = torch.arange(length, device=codes.device) < lengths[:, None]
            mask = mask[:, None, None, :]  # [B, 1, 1, T]
        rope = self.rope[:length]
        for block in self.blocks:
            x = block(x, rope, mask)  # [B, T, D]
        return self.norm(x)

    def forward(
        self,
        codes: torch.Tensor,
        semantic: torch.Tensor,
        lengths: torch.Tensor | None = None,
        levels: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        """Logits [B, Q, T, K] of every level, or [B, T, K] of one level per item when `levels`
        (an int or [B] ints) is given (cheaper: training and decoding need one level)."""
        h = self.hidden(codes, semantic, lengths)
        if levels is None:
            return torch.einsum("btd,qkd->bqtk", h, self.heads)
        if isinstance(levels, int):
            return h @ self.heads[levels].t()
        return torch.einsum("btd,bkd->btk", h, self.heads[levels])

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
