"""Per-stage evaluation: loss, perplexity and accuracy on a split, against unigram baselines.

The baselines are the entropies (nats, like the loss) of the split's own targets: `unigram`
pools every target, `level_unigram` knows each target's level (a model that only learned the
per-level code frequencies scores it). A model that learned anything beats both by a margin.
`level_loss` is the cross-entropy of what sampling draws from (each target over its own range,
`segue.lm.loss`): the measure to compare a model trained with `softmax="level"` by, whose
full-vocabulary `loss` means little (it never learned to avoid the other levels' ids).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from segue.errors import InputError
from segue.lm.data import IGNORE
from segue.lm.loss import level_ranges, sliced_loss
from segue.lm.stages import StageLM


def _entropy(counts: torch.Tensor) -> float:
    p = counts[counts > 0].double() / counts.sum()
    return float(-(p * p.log()).sum())


def level_groups(layout) -> torch.Tensor:
    """[vocab_size] group of each target id: its level (EOS with the first), or 0 (semantic)."""
    groups = torch.zeros(layout.vocab_size, dtype=torch.long)
    for g, (lo, hi) in enumerate(level_ranges(layout)):
        groups[lo:hi] = g
    return groups


@dataclass
class LMReport:
    """An LM on a split: token-weighted loss (nats), perplexity and accuracy over `tokens`
    targets, and the targets' unigram entropies (all pooled; per level) as baselines."""

    loss: float
    perplexity: float
    accuracy: float
    tokens: int
    unigram_entropy: float
    level_unigram_entropy: float
    level_loss: float

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    def to_json(self, **extra) -> str:
        """The report as JSON (`extra` keys first, e.g. stage="coarse")."""
        return json.dumps({**extra, **self.to_dict()}, indent=1) + "\n"


@torch.inference_mode()
def evaluate_lm(
    lm: StageLM, dataset: Dataset, *, batch_size: int = 8, max_batches: int | None = None
) -> LMReport:
    """Token-weighted loss / perplexity / accuracy of `lm` on `dataset`, and the baselines."""
    model, layout = lm.model.eval(), lm.layout
    device = model.head.weight.device
    nll, correct, count, level_nll, level_count = 0.0, 0, 0, 0.0, 0
    ranges = level_ranges(layout)
    counts = torch.zeros(layout.vocab_size, dtype=torch.long)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for b, batch in enumerate(loader):
        if max_batches is not None and b >= max_batches:
            break
        target = batch["target"].to(device)
        logits = model(batch["input"].to(device)).float()
        mask = target != IGNORE
        nll += float(
            torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE, reduction="sum"
            )
        )
        correct += int(((logits.argmax(-1) == target) & mask).sum())
        count += int(mask.sum())
        level = sliced_loss(logits, target, ranges)
        level_nll += float(level.loss) * int(level.count)
        level_count += int(level.count)
        counts += torch.bincount(target[mask].cpu(), minlength=layout.vocab_size)
    if count == 0:
        raise InputError("no target tokens to evaluate")
    groups = level_groups(layout)
    per_level = [counts[groups == g] for g in range(int(groups.max()) + 1)]
    level_entropy = sum(float(c.sum()) / count * _entropy(c) for c in per_level if c.sum() > 0)
    loss = nll / count
    return LMReport(
        loss=loss,
        perplexity=math.exp(min(loss, 50.0)),
        accuracy=correct / count,
        tokens=count,
        unigram_entropy=_entropy(counts),
        level_unigram_entropy=level_entropy,
        level_loss=level_nll / max(1, level_count),
    )


@dataclass
class ConditioningReport:
    """The coarse LM on the same windows with their own semantic tokens and with another
    utterance's. `gain` (nats per acoustic token) is what the right semantic tokens are worth to
    it: near 0, it renders sound from the acoustic context alone and will not keep what the
    semantic tokens say (resynthesis from them loses the words)."""

    own: LMReport
    mismatched: LMReport

    @property
    def gain(self) -> float:
        return self.mismatched.level_loss - self.own.level_loss

    def to_dict(self) -> dict[str, float]:
        return {"mismatched_level_loss": self.mismatched.level_loss, "semantic_gain": self.gain}


def format_report(stage: str, report: LMReport) -> str:
    """One line per metric, the baselines last."""
    rows = [
        f"{stage} LM, {report.tokens} target tokens",
        f"  loss        {report.loss:.4f} nats/token",
        f"  level loss  {report.level_loss:.4f} nats/token (each target over its own range)",
        f"  perplexity  {report.perplexity:.2f}",
        f"  accuracy    {report.accuracy:.4f}",
        f"  unigram entropy of the targets        {report.unigram_entropy:.4f}",
        f"  per-level unigram entropy of targets  {report.level_unigram_entropy:.4f}",
    ]
    return "\n".join(rows)
