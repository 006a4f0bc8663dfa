"""SoundStorm's bidirectional transformer: codes [B, Q, T] + semantic [B, Ts] -> logits.

Each acoustic frame's input is the sum of its Q level embeddings (one table of K + 1 rows per
level, row K being MASK) and the embedding of the semantic token it is aligned to (token
t // ratio; PAD past the last one). Pre-norm blocks with full (non-causal) SDPA attention and
rotary positions, then one output head per level.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from segue.pretrained import PretrainedMixin
from segue.soundstorm.config import SoundStormConfig


def rotary(max_len: int, head_dim: int, base: float) -> torch.Tensor:
    """[max_len, head_dim / 2] complex rotations."""
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv[None]
    return torch.polar(torch.ones_like(angles), angles).to(torch.complex64)


def apply_rotary(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, hd] rotated pairwise by rope [T, hd / 2]."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rope).flatten(-2).to(x.dtype)


class Block(nn.Module):
    """x + attention(norm(x)), then x + mlp(norm(x)); attention sees every valid frame."""

    def __init__(self, config: SoundStormConfig):
        super().__init__()
        d, hidden = config.d_model, int(config.mlp_ratio * config.d_model)
        self.n_head, self.dropout = config.n_head, config.dropout
        self.norm1 = nn.LayerNorm(d, bias=False)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.norm2 = nn.LayerNorm(d, bias=False)
        self.up = nn.Linear(d, hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(
        self, x: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x [B, T, D], rope [T, hd/2] complex, mask [B, 1, 1, T] bool (True: a valid key)."""
        batch, length, d = x.shape
        p = self.dropout if self.training else 0.0
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.n_head, -1).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, hd]
        q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = self.proj(y.transpose(1, 2).reshape(batch, length, d))
        x = x + F.dropout(y, p, self.training)
        y = self.down(F.gelu(self.up(self.norm2(x)), approximate="tanh"))
        return x + F.dropout(y, p, self.training)


class SoundStorm(nn.Module, PretrainedMixin):
    """Level + semantic embeddings -> n_layer bidirectional blocks -> LayerNorm -> Q heads."""

    config_class = SoundStormConfig

    def __init__(self, config: SoundStormConfig):
        super().__init__()
        if min(config.n_levels, config.codebook_size, config.semantic_vocab) < 1:
            raise ValueError(
                "SoundStormConfig.n_levels, codebook_size and semantic_vocab must be set "
                "(they come from the token shards)"
            )
        self.config = config
        q, k, d = config.n_levels, config.codebook_size, config.d_model
        self.levels = nn.Embedding(q * (k + 1), d)  # level l's table: rows l(K+1) .. l(K+1)+K
        self.semantic = nn.Embedding(config.semantic_vocab + 1, d)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = nn.LayerNorm(d, bias=False)
        self.heads = nn.Parameter(torch.empty(q, k, d))  # level l's output layer: heads[l]
        self.register_buffer("offsets", torch.arange(q) * (k + 1), persistent=False)  # [Q]
        self.register_buffer(
            "rope", rotary(config.max_frames, config.head_dim, config.rope_base), persistent=False
        )
        self.apply(self._init)
        nn.init.normal_(self.heads, std=0.02)
        for block in self.blocks:  # GPT-2: residual projections scaled by depth
            for linear in (block.proj, block.down):
                nn.init.normal_(linear.weight, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

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
            raise ValueError(f"codes have {n_levels} levels, the model {self.config.n_levels}")
        if length > self.config.max_frames:
            raise ValueError(f"{length} frames is past max_frames={self.config.max_frames}")
        x = self.levels(codes + self.offsets[:, None]).sum(1)  # [B, T, D]
        x = x + self.semantic(self.align(semantic, length))
        x = F.dropout(x, self.config.dropout, self.training)
        mask = None
        if lengths is not None:
            mask = torch.arange(length, device=codes.device) < lengths[:, None]
            mask = mask[:, None, None, :]  # [B, 1, 1, T]
        rope = self.rope[:length]
        for block in self.blocks:
            x = block(x, rope, mask)
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
