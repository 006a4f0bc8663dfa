"""Span masks for masked prediction (HuBERT / wav2vec 2.0 style), padding-aware.

For each example with `n` valid frames, about `prob * n` span starts are drawn without
replacement from [0, n - span] and `span` frames are masked from each start (spans may overlap,
so the masked share is 1 - (1 - prob)^span at most, ~58 % for p=0.16, span 5). Padding frames
(index >= n) are never masked.
"""

from __future__ import annotations

import torch

from segue.errors import InputError


def frame_mask(frame_lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """[B] valid-frame counts -> bool [B, frames], True on valid (non-padding) frames."""
    return torch.arange(frames, device=frame_lengths.device)[None] < frame_lengths[:, None]


def span_mask(
    frame_lengths: torch.Tensor,
    frames: int,
    prob: float,
    span: int,
    *,
    min_spans: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random span mask: [B] valid-frame counts -> bool [B, frames], True where masked.

    The number of spans of an example is floor(prob * n + u), u ~ U[0, 1) (so its expectation is
    exactly prob * n), at least `min_spans`, at most the n - span + 1 possible starts. Examples
    shorter than `span` frames are not masked. Draws from `generator` (CPU) or the global RNG.
    """
    if not 0.0 <= prob <= 1.0 or span < 1:
        raise InputError(f"need 0 <= prob <= 1 and span >= 1, got prob={prob}, span={span}")
    lengths = frame_lengths.tolist()
    mask = torch.zeros(len(lengths), frames, dtype=torch.bool)
    uniform = torch.rand(len(lengths), generator=generator).tolist()
    for row, (n, u) in enumerate(zip(lengths, uniform)):
        n = min(int(n), frames)
        starts_available = n - span + 1
        if starts_available <= 0:
            continue
        count = min(max(int(prob * n + u), min_spans), starts_available)
        if count == 0:
            continue
        starts = torch.randperm(starts_available, generator=generator)[:count]
        index = (starts[:, None] + torch.arange(span)[None]).flatten()
        mask[row, index] = True
    return mask.to(frame_lengths.device)
