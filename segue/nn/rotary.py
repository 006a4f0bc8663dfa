"""Rotary position embeddings (RoPE): each pair of a head's channels is rotated by an angle
proportional to the position, so a query-key product depends on their distance only.

A table holds (cos, sin) per position and pair, float32: [max_len, head_dim/2, 2]. It is a real
tensor, not a complex one, so that a model cast to another dtype keeps it (`Module.to` would drop
a complex buffer's imaginary part); the rotation itself is a complex multiply in float32.
"""

from __future__ import annotations

import torch


def rotary_table(max_len: int, head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """[max_len, head_dim/2, 2]: (cos, sin) of position t times frequency base^(-2i/head_dim)
    (computed in float64, stored as float32)."""
    if head_dim % 2:
        raise ValueError(f"rotary positions need an even head_dim, got {head_dim}")
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv[None]  # [T, hd/2]
    return torch.stack([angles.cos(), angles.sin()], dim=-1).float()


def apply_rotary(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """x [B, T, H, hd] with channel pairs (2i, 2i+1) rotated by table [T, hd/2, 2] (one row per
    position of x). In float32 (under bf16 autocast too), returned in x's dtype."""
    rope = torch.view_as_complex(table.float())[:, None]  # [T, 1, hd/2]
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # [B, T, H, hd/2]
    return torch.view_as_real(pairs * rope).flatten(-2).to(x.dtype)  # [B, T, H, hd]


def step_rotary(
    table: torch.Tensor, n_head: int, n_kv_head: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rotation of a whole fused qkv row [q heads | k heads | v heads] as real arithmetic,
    for a decoding step (no complex views): rotated = row * cos[t] + row[swap] * sin[t].

    table [T, hd/2, 2] -> cos, sin [T, (n_head + 2 n_kv_head) hd] (v's columns: 1 and 0) in
    `dtype`, and swap [(n_head + 2 n_kv_head) hd], the index that exchanges each pair.
    """
    table = table.float()
    keep = torch.stack([torch.ones_like(table[..., 0]), torch.zeros_like(table[..., 1])], -1)
    both = torch.stack([table, keep], dim=1)  # [T, 2, hd/2, 2]: rotate (q, k), keep (v)
    cos = both[..., 0].repeat_interleave(2, dim=-1)  # [T, 2, hd]
    sin = torch.stack([-both[..., 1], both[..., 1]], dim=-1).flatten(-2)  # [T, 2, hd]
    slots = torch.tensor([0] * (n_head + n_kv_head) + [1] * n_kv_head, device=table.device)
    cos, sin = (t[:, slots].flatten(1).to(dtype) for t in (cos, sin))  # [T, (H + 2G) hd]
    swap = torch.arange(cos.shape[1], device=table.device).view(-1, 2).flip(-1).flatten()
    return cos, sin, swap
