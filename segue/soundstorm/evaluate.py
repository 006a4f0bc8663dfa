"""SoundStorm on a split: its training loss (masked-token cross-entropy) with seeded masks.

The masks are SoundStorm's training masks (`masking.mask_codes`: a random prompt, one level per
window, a cosine share of its frames hidden, every level above it hidden), drawn from a
generator seeded by the batch index, so two evaluations of the same crops (with their own
semantic tokens, or with another utterance's: `SoundStormDataset(semantic_shift=...)`) hide the
same frames and differ only in what they condition on.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from segue.errors import InputError
from segue.soundstorm.masking import mask_codes
from segue.soundstorm.model import SoundStorm


@dataclass
class SoundStormReport:
    """Token-weighted masked-token loss (nats) and accuracy over `tokens` hidden targets of
    `windows` crops; `level_loss[q]` over the windows whose level q was predicted (NaN where
    none was)."""

    loss: float
    accuracy: float
    tokens: int
    windows: int
    level_loss: list[float]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self, **extra) -> str:
        """The report as JSON (`extra` keys after its own)."""
        return json.dumps({**self.to_dict(), **extra}, indent=1) + "\n"


@torch.inference_mode()
def evaluate_soundstorm(
    model: SoundStorm,
    dataset: Dataset,
    *,
    batch_size: int = 16,
    max_batches: int | None = None,
    seed: int = 0,
) -> SoundStormReport:
    """Masked-token loss of `model` on `dataset` (`SoundStormDataset` items), masks seeded by
    (seed, batch index)."""
    model.eval()
    device = next(model.parameters()).device
    n_levels = model.config.n_levels
    nll, correct, count, windows = 0.0, 0, 0, 0
    level_nll = torch.zeros(n_levels, dtype=torch.float64)
    level_count = torch.zeros(n_levels, dtype=torch.long)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for b, batch in enumerate(loader):
        if max_batches is not None and b >= max_batches:
            break
        codes, lengths = batch["codes"].to(device), batch["length"].to(device)
        generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + b)
        masked = mask_codes(codes, model.config.mask_id, lengths, generator)
        logits = model(masked.inputs, batch["semantic"].to(device), lengths, levels=masked.level)
        target = codes.gather(1, masked.level[:, None, None].expand(-1, 1, codes.shape[2]))[:, 0]
        losses = F.cross_entropy(logits.float().transpose(1, 2), target, reduction="none")
        mask = masked.loss_mask  # [B, T]
        per_item = (losses * mask).sum(1).double().cpu()
        per_count = mask.sum(1).cpu()
        nll += float(per_item.sum())
        correct += int(((logits.argmax(-1) == target) & mask).sum())
        count += int(per_count.sum())
        windows += codes.shape[0]
        level_nll.index_add_(0, masked.level.cpu(), per_item)
        level_count.index_add_(0, masked.level.cpu(), per_count)
    if count == 0:
        raise InputError("no masked targets to evaluate (empty split?)")
    per_level = [
        float(level_nll[q] / level_count[q]) if level_count[q] else float("nan")
        for q in range(n_levels)
    ]
    return SoundStormReport(
        loss=nll / count,
        accuracy=correct / count,
        tokens=count,
        windows=windows,
        level_loss=per_level,
    )


def format_report(report: SoundStormReport) -> str:
    """One line per metric, then the loss of each level."""
    levels = "  ".join(
        f"{q}: {loss:.3f}" for q, loss in enumerate(report.level_loss) if loss == loss
    )
    return "\n".join(
        [
            f"SoundStorm, {report.tokens} masked targets in {report.windows} windows",
            f"  loss      {report.loss:.4f} nats/token",
            f"  accuracy  {report.accuracy:.4f}",
            f"  loss by level  {levels}",
        ]
    )
