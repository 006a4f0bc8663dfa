"""Making the semantic model follow the words, not the voice (ContentVec-style, on our data).

Two ingredients, each off unless configured (`InvarianceConfig`):

* **voice perturbation**: the student hears a crop played `f` times faster (resampling moves
  pitch and formants together by f: another, longer or shorter, vocal tract), while its targets
  come from the clean crop, warped onto the perturbed time axis. Predicting the same clusters
  from both voices rewards what they share: the content.
* **cross-voice alignment**: the TTS corpus speaks each sentence in many voices. For a pair of
  such utterances the teacher's features are aligned by DTW, and the student's states at the
  tokenizer layer are pulled together along that path by an InfoNCE loss (the aligned frame
  against every frame of the other pairs' utterances, i.e. other sentences).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from segue.config import unset_old_placeholders
from segue.errors import InputError


@dataclass
class InvarianceConfig:
    """Content-invariance training of the semantic model (all off by default).

    perturb: probability that a training crop's student input is speed-perturbed by a factor
        drawn log-uniformly from `perturb_range` (targets: the clean crop's, time-warped)
    pairs: same-sentence cross-voice pairs added to each batch (0: none; else at least 2, since
        the other pairs are the negatives), utterances at most `pair_seconds` long
    weight: weight of the alignment loss; temperature: its InfoNCE temperature
    layer: the student layer pulled together (None: the model's tokenizer layer)

    Placeholders: None is "not set" (docs/training.md); old configs' layer -1 reads as None.
    """

    perturb: float = 0.0
    perturb_range: tuple[float, float] = (0.8, 1.25)
    pairs: int = 0
    pair_seconds: float = 4.0
    weight: float = 1.0
    temperature: float = 0.1
    layer: int | None = None

    def __post_init__(self) -> None:
        unset_old_placeholders(self, -1, "layer")
        if not 0.0 <= self.perturb <= 1.0:
            raise InputError(f"invariance.perturb is a probability, got {self.perturb}")
        low, high = self.perturb_range
        if not 0.5 <= low <= high <= 2.0:
            raise InputError(f"invariance.perturb_range must be within [0.5, 2], got {low}, {high}")
        if self.pairs == 1 or self.pairs < 0:
            raise InputError(f"invariance.pairs must be 0 (none) or at least 2, got {self.pairs}")
        if self.pair_seconds <= 0 or self.weight < 0 or self.temperature <= 0:
            raise InputError("invariance.pair_seconds and .temperature must be > 0, .weight >= 0")
        if self.layer is not None and self.layer < 0:
            raise InputError(f"invariance.layer must be >= 0 (None: the model's), got {self.layer}")

    @property
    def aligns(self) -> bool:
        return self.pairs >= 2 and self.weight > 0


def resample_fft(signal: torch.Tensor, samples: int) -> torch.Tensor:
    """[T] -> [samples]: band-limited resampling through the spectrum (played T / samples
    times faster at the same rate). Frequencies above the new Nyquist are dropped."""
    length = signal.shape[-1]
    spectrum = torch.fft.rfft(signal.float())
    bins = samples // 2 + 1
    if bins <= spectrum.shape[-1]:
        spectrum = spectrum[..., :bins]
    else:
        spectrum = F.pad(spectrum, (0, bins - spectrum.shape[-1]))
    return torch.fft.irfft(spectrum, n=samples) * (samples / length)


def speed_perturb(
    audio: torch.Tensor, lengths: torch.Tensor, factors: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row b of audio [B, T] (valid `lengths[b]` samples) played `factors[b]` times faster.

    Returns (audio [B, T], lengths [B]): the perturbed rows, zero-padded or cut to T.
    """
    out = torch.zeros_like(audio)
    new_lengths = lengths.clone()
    for row, (length, factor) in enumerate(zip(lengths.tolist(), factors.tolist())):
        if factor == 1.0:
            out[row] = audio[row]
            continue
        samples = max(1, round(length / factor))
        moved = resample_fft(audio[row, :length], samples)[: audio.shape[-1]]
        out[row, : moved.shape[0]] = moved.to(audio.dtype)
        new_lengths[row] = moved.shape[0]
    return out, new_lengths


def warp_frames(
    targets: torch.Tensor, factors: torch.Tensor, frame_lengths: torch.Tensor, ignore: int
) -> torch.Tensor:
    """Targets [B, F] of the clean crops -> targets of the perturbed crops on their own frames.

    Perturbed frame g covers the clean time around (g + 1/2) f frames; frames that fall past the
    clean targets, or past `frame_lengths[b]` (the perturbed valid frames), are `ignore`.
    """
    frames = targets.shape[1]
    g = torch.arange(frames, device=targets.device, dtype=torch.float64)
    source = torch.floor((g[None] + 0.5) * factors[:, None].double()).long()  # [B, F]
    inside = (source < frames) & (g[None] < frame_lengths[:, None])
    warped = targets.gather(1, source.clamp(max=frames - 1))
    warped = warped.masked_fill(~inside, ignore)
    return warped.masked_fill(warped < 0, ignore)


def dtw_path(cost: np.ndarray) -> np.ndarray:
    """The minimal-cost monotonic alignment of cost [N, M] (steps (1,1), (1,0), (0,1)).

    Returns [L, 2] index pairs from (0, 0) to (N-1, M-1). Anti-diagonals are filled as vectors,
    so an utterance pair of a few hundred frames takes a few milliseconds.
    """
    n, m = cost.shape
    if n == 0 or m == 0:
        raise InputError(f"cannot align an empty sequence (cost {n} x {m})")
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    for diagonal in range(n + m - 1):
        i = np.arange(max(0, diagonal - m + 1), min(n, diagonal + 1))
        j = diagonal - i
        best = np.minimum(np.minimum(total[i, j], total[i, j + 1]), total[i + 1, j])
        total[i + 1, j + 1] = cost[i, j] + best
    path = [(n - 1, m - 1)]
    i, j = n, m
    while (i, j) != (1, 1):
        moves = ((i - 1, j - 1), (i - 1, j), (i, j - 1))
        i, j = min(moves, key=lambda ij: total[ij])
        path.append((i - 1, j - 1))
    return np.asarray(path[::-1], dtype=np.int64)


def align_pairs(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    lengths_a: torch.Tensor,
    lengths_b: torch.Tensor,
) -> list[np.ndarray]:
    """DTW paths ([L, 2] frame pairs) between the valid frames of each pair of feature rows
    [P, F, D], on cosine distance."""
    paths = []
    for row in range(features_a.shape[0]):
        a = F.normalize(features_a[row, : int(lengths_a[row])].float(), dim=-1)
        b = F.normalize(features_b[row, : int(lengths_b[row])].float(), dim=-1)
        paths.append(dtw_path((1.0 - a @ b.T).cpu().numpy()))
    return paths


def alignment_loss(
    states_a: torch.Tensor,
    states_b: torch.Tensor,
    lengths_a: torch.Tensor,
    lengths_b: torch.Tensor,
    paths: list[np.ndarray],
    temperature: float = 0.1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """InfoNCE that pulls aligned frames of two voices together, both directions.

    states_a, states_b [P, F, D]: the pairs' states; paths[p]: [L, 2] aligned frames of pair p.
    An aligned frame of A is scored against every valid frame of B's utterances: its partner is
    the positive, the frames of the *other* pairs (other sentences) the negatives; the rest of
    its own partner utterance is left out (neighbouring frames are not negatives). Returns
    (loss, {align_loss, align_cos: mean cosine of aligned frames, align_acc: the partner ranks
    first}).
    """
    if len(paths) < 2:
        raise InputError("the alignment loss needs at least 2 pairs (the others are negatives)")
    device = states_a.device
    owner_a = torch.cat([torch.full((int(n),), p, device=device) for p, n in enumerate(lengths_a)])
    owner_b = torch.cat([torch.full((int(n),), p, device=device) for p, n in enumerate(lengths_b)])
    flat_a = F.normalize(torch.cat([s[: int(n)] for s, n in zip(states_a, lengths_a)]), dim=-1)
    flat_b = F.normalize(torch.cat([s[: int(n)] for s, n in zip(states_b, lengths_b)]), dim=-1)
    offsets_a = torch.cumsum(lengths_a, 0) - lengths_a
    offsets_b = torch.cumsum(lengths_b, 0) - lengths_b
    index_a = torch.cat([torch.as_tensor(path[:, 0], device=device) + offsets_a[p]
                         for p, path in enumerate(paths)])
    index_b = torch.cat([torch.as_tensor(path[:, 1], device=device) + offsets_b[p]
                         for p, path in enumerate(paths)])
    pair = owner_a[index_a]

    def direction(anchors, partners, owners, positives):
        logits = anchors @ partners.T / temperature  # [L, N]
        own = owners[None, :] == pair[:, None]
        positive = torch.zeros_like(own)
        positive[torch.arange(len(positives), device=device), positives] = True
        logits = logits.masked_fill(own & ~positive, float("-inf"))
        loss = F.cross_entropy(logits.float(), positives)
        accuracy = (logits.argmax(dim=-1) == positives).float().mean()
        return loss, accuracy

    loss_ab, acc_ab = direction(flat_a[index_a], flat_b, owner_b, index_b)
    loss_ba, acc_ba = direction(flat_b[index_b], flat_a, owner_a, index_a)
    loss = (loss_ab + loss_ba) / 2
    cosine = (flat_a[index_a] * flat_b[index_b]).sum(-1).mean()
    return loss, {
        "align_loss": loss.detach(),
        "align_cos": cosine.detach(),
        "align_acc": ((acc_ab + acc_ba) / 2).detach(),
    }
