"""Next-token cross-entropy of a stage LM, over the whole vocabulary or over each target's range.

Sampling draws each generated token from its legal range only (`Layout.target_ranges`: the
position's acoustic level, or the semantic codes and EOS), so the distribution a model is used
with is the softmax over that range. Training can normalise the same way ("level" softmax):
the head then computes only the range's logits (1,024 of the fine stage's 8,196), which makes a
CPU training step of the `tiny` fine LM about 1.7x faster, and the loss is the cross-entropy of
the distribution that sampling uses. Targets outside every range (EOS of an acoustic stage,
which sampling never draws) are left out of that loss. The "full" softmax is the classic one.

Level-softmax losses are lower than full-softmax ones by construction (no probability goes to
ids sampling cannot draw): compare runs with the same softmax only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from segue.lm.data import IGNORE

#: What a target's probability is normalised over in training (see the module docstring).
Softmax = Literal["full", "level"]


@dataclass
class TokenLoss:
    """Mean cross-entropy over the counted targets; correct / count give the accuracy."""

    loss: torch.Tensor  # [] float32
    correct: torch.Tensor  # [] int64: argmax (within the range) == target
    count: torch.Tensor  # [] int64: targets in the loss


def token_loss(logits: torch.Tensor, target: torch.Tensor) -> TokenLoss:
    """Full softmax: logits [B, T, V], target [B, T] (IGNORE where there is none)."""
    mask = target != IGNORE
    loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=IGNORE)
    correct = ((logits.argmax(-1) == target) & mask).sum()
    return TokenLoss(loss, correct, mask.sum())


def range_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    ranges: Sequence[tuple[int, int]],
) -> TokenLoss:
    """Softmax over each target's own range: hidden [B, T, D] (after the final norm), the
    head's weight [V, D], target [B, T]; ranges: the disjoint [lo, hi) a target can fall in.
    Only the rows of each range's targets go through that range's slice of the head."""
    # zero, but a graph through every input: a batch with no target in any range still
    # backpropagates (and gives DDP a gradient for the head)
    total = (hidden.sum() + weight.sum()).float() * 0.0
    return _per_range(target, ranges, lambda m, lo, hi: hidden[m] @ weight[lo:hi].t(), total)


def sliced_loss(
    logits: torch.Tensor, target: torch.Tensor, ranges: Sequence[tuple[int, int]]
) -> TokenLoss:
    """`range_loss` from logits [B, T, V] already computed (validating a full-softmax model,
    which has them anyway): each target's row sliced to its range."""
    total = logits.new_zeros((), dtype=torch.float32)
    return _per_range(target, ranges, lambda m, lo, hi: logits[m, lo:hi], total)


def _per_range(
    target: torch.Tensor,
    ranges: Sequence[tuple[int, int]],
    logits_of: Callable[[torch.Tensor, int, int], torch.Tensor],
    total: torch.Tensor,
) -> TokenLoss:
    """Cross-entropy of each range's targets over the range (`logits_of(mask, lo, hi)`: their
    [N, hi - lo] logits), summed onto `total`; the mean over the targets in any range."""
    correct = torch.zeros((), dtype=torch.long, device=target.device)
    count = torch.zeros((), dtype=torch.long, device=target.device)
    for lo, hi in ranges:
        mask = (target >= lo) & (target < hi)
        if not bool(mask.any()):
            continue
        logits = logits_of(mask, lo, hi)  # [N, hi - lo]
        wanted = target[mask] - lo
        total = total + F.cross_entropy(logits.float(), wanted, reduction="sum")
        correct = correct + (logits.argmax(-1) == wanted).sum()
        count = count + mask.sum()
    return TokenLoss(total / count.clamp(min=1), correct, count)


def level_ranges(layout: Any) -> list[tuple[int, int]]:
    """The distinct [lo, hi) a stage's layout samples its generated tokens from, in id order:
    one per acoustic level it generates, or the semantic codes and EOS."""
    cycle = getattr(layout, "n_target_levels", 1) or 1  # generated tokens per frame
    return sorted(set(layout.target_ranges(cycle)))
