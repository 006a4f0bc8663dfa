"""SoundStorm's training mask and the cosine schedule it shares with decoding.

For each item of a batch of codes [B, Q, T] with `lengths` valid frames:

    prompt  p ~ U{0 .. n - 1}      frames [0, p) keep every level (the acoustic prompt)
    level   q ~ U{0 .. Q - 1}      levels < q keep every frame (already decoded); or drawn
                                   with `level_weights` (training more often on some levels),
                                   or given (validation: `mask_codes_seeded`)
    ratio   cos(pi/2 * u), u ~ U[0, 1)
                                   ceil(ratio * (n - p)) of level q's frames [p, n) are masked
    finer   levels > q             masked on every frame [p, n) (not decoded yet)

The loss is on level q's masked frames only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from segue.errors import InputError


def mask_ratio(progress: torch.Tensor | float) -> torch.Tensor:
    """Cosine schedule: the fraction still masked at progress in [0, 1] (1 at 0, 0 at 1)."""
    return torch.cos(torch.as_tensor(progress, dtype=torch.float64) * (math.pi / 2))


def pick_lowest(
    scores: torch.Tensor, candidates: torch.Tensor, count: torch.Tensor
) -> torch.Tensor:
    """[B, T] bool: the `count` [B] candidates with the lowest scores [B, T] in each row."""
    scores = scores.float().nan_to_num(nan=1e30, posinf=1e30, neginf=-1e30)
    scores = scores.masked_fill(~candidates, math.inf)
    rank = scores.argsort(dim=1, stable=True).argsort(dim=1)
    return (rank < count[:, None]) & candidates


def checked_level_weights(weights: Sequence[float] | torch.Tensor, n_levels: int) -> torch.Tensor:
    """`level_weights` as a float tensor [Q], refused unless Q weights >= 0, not all 0."""
    values = torch.as_tensor(weights, dtype=torch.float)
    if values.shape != (n_levels,) or bool((values < 0).any()) or not float(values.sum()) > 0:
        raise InputError(
            f"level_weights must be {n_levels} weights >= 0 (one per level, not all 0), "
            f"got {values.tolist()}"
        )
    return values


@dataclass
class Masked:
    """A masked batch: inputs [B, Q, T] (MASK where hidden), loss_mask [B, T] (level q's masked
    frames), level [B] (q), prompt [B] (frames of prompt)."""

    inputs: torch.Tensor
    loss_mask: torch.Tensor
    level: torch.Tensor
    prompt: torch.Tensor


def mask_codes(
    codes: torch.Tensor,
    mask_id: int,
    lengths: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    level_weights: torch.Tensor | None = None,
    level: torch.Tensor | None = None,
) -> Masked:
    """Sample SoundStorm's training mask for codes [B, Q, T] (see the module docstring).
    level_weights [Q] (>= 0, not all 0): q's relative probabilities (None: uniform); level [B]:
    each item's q, not drawn."""
    batch, n_levels, length = codes.shape
    device = codes.device
    if lengths is None:
        lengths = torch.full((batch,), length, device=device)
    lengths = lengths.to(device=device, dtype=torch.long)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=device)

    prompt = (rand(batch) * lengths).long().clamp(max=lengths - 1).clamp(min=0)
    if level is not None:
        level = level.to(device=device, dtype=torch.long)
        if level.shape != (batch,) or bool(((level < 0) | (level >= n_levels)).any()):
            raise ValueError(f"level must be {batch} levels in [0, {n_levels})")
    elif level_weights is None:
        level = (rand(batch) * n_levels).long().clamp(max=n_levels - 1)
    else:
        weights = checked_level_weights(level_weights, n_levels).to(device)
        level = torch.multinomial(weights.expand(batch, -1), 1, generator=generator)[:, 0]
    frames = torch.arange(length, device=device)[None]  # [1, T]
    target = (frames >= prompt[:, None]) & (frames < lengths[:, None])  # [B, T] non-prompt
    count = (mask_ratio(rand(batch)) * (lengths - prompt)).ceil().long().clamp(min=1)
    chosen = pick_lowest(rand(batch, length), target, count)  # level q's masked frames
    levels = torch.arange(n_levels, device=device)[None, :, None]  # [1, Q, 1]
    q = level[:, None, None]
    hidden = ((levels == q) & chosen[:, None]) | ((levels > q) & target[:, None])
    inputs = codes.masked_fill(hidden, mask_id)
    return Masked(inputs=inputs, loss_mask=chosen, level=level, prompt=prompt)


def mask_codes_seeded(
    codes: torch.Tensor,
    mask_id: int,
    lengths: torch.Tensor | None,
    seeds: torch.Tensor,
) -> Masked:
    """A validation mask for codes [B, Q, T]: item i's level is seeds[i] mod Q (every level
    equally often over consecutive seeds, where random draws would leave some levels out of a
    small set) and the rest of its mask is drawn from a generator seeded by seeds[i] [B]. An
    item's mask does not depend on its batch (size, order, rank), so a validation over the same
    items is the same under any batching."""
    batch, n_levels, length = codes.shape
    if lengths is None:
        lengths = torch.full((batch,), length, device=codes.device)
    parts = [
        mask_codes(
            codes[i : i + 1],
            mask_id,
            lengths[i : i + 1],
            torch.Generator(device=codes.device).manual_seed(int(seeds[i])),
            level=(seeds[i : i + 1] % n_levels),
        )
        for i in range(batch)
    ]
    return Masked(
        inputs=torch.cat([m.inputs for m in parts]),
        loss_mask=torch.cat([m.loss_mask for m in parts]),
        level=torch.cat([m.level for m in parts]),
        prompt=torch.cat([m.prompt for m in parts]),
    )
