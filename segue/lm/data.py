"""Training sequences of each stage, cut from token shards (no codec, no semantic model).

Item i of a dataset is one utterance, as a random window of the stage's length laid out by
its layout (segue/lm/layout.py):

    input   [max_length - 1] int64   the sequence without its last id, PAD-padded
    target  [max_length - 1] int64   the sequence shifted by one; IGNORE (-100) on the
                                     conditioning part (semantic block / coarse block) and padding

Windows are random but reproducible: the start of item i in epoch e depends only on
(seed, e, i). With probability `edge_probability` a window is pinned to the file's start (half
of those) or end (the other half), so BOS/EOS are seen often even in long files; an utterance
shorter than the window is taken whole. BOS is put only where the window starts at the file's
first frame and EOS only where it reaches the last one.

The coarse stage joins semantic and acoustic shards on the utterance key: r = acoustic rate /
semantic rate acoustic frames per semantic token (2 for 50 Hz / 25 Hz); an utterance's aligned
length is Ts = min(semantic frames, ceil(acoustic frames / r)) semantic tokens and
Ta = min(acoustic frames, r * Ts) frames, so the last frame of both is the file's end.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from segue.data.shards import TokenShards
from segue.errors import InputError
from segue.lm.layout import CoarseLayout, FineLayout, SemanticLayout, dedup

IGNORE = -100

#: the default `shift` of `conditioning_tokens`: the mismatched tokens are those of the
#: utterance 37 places on (a prime, past neighbours that often share a voice or a sentence)
MISMATCH_SHIFT = 37


def window_start(n: int, length: int, rng: np.random.Generator, edge_probability: float) -> int:
    """Start of a window of `length` frames in an utterance of `n` frames (0 if it fits)."""
    if n <= length:
        return 0
    u = rng.random()
    if u < edge_probability / 2:
        return 0
    if u < edge_probability:
        return n - length
    return int(rng.integers(0, n - length + 1))


def join_utterances(semantic: TokenShards, acoustic: TokenShards) -> list[tuple[int, int]]:
    """(acoustic index, semantic index) of every non-empty utterance in both shard sets.

    They join on the utterance key (the manifest path); no common utterance is an error.
    """
    where = {e.key: i for i, e in enumerate(acoustic.entries) if e.frames > 0}
    pairs = [
        (where[e.key], j) for j, e in enumerate(semantic.entries) if e.key in where and e.frames > 0
    ]
    if not pairs:
        raise InputError(
            f"no utterance is in both {semantic.root} and {acoustic.root} "
            "(they join on the manifest path)"
        )
    return pairs


def check_shift(shift: int) -> int:
    """`semantic_shift`, checked (>= 0)."""
    if shift < 0:
        raise InputError(f"semantic_shift must be >= 0, got {shift}")
    return shift


def conditioning_tokens(
    semantic: TokenShards, pairs: list[tuple[int, int]], index: int, shift: int = 0
) -> torch.Tensor:
    """[Ts] the semantic tokens that item `index` of `pairs` (`join_utterances`) is conditioned
    on: its own, or with shift > 0 another utterance's (the one `shift` places on, cycled),
    tiled or cut to the own length. The same windows and targets with the wrong content: what a
    model loses on them is what it takes from its semantic tokens."""
    own = pairs[index][1]
    if not shift:
        return torch.from_numpy(semantic.tokens(own)[0])
    n = semantic.entries[own].frames  # the own length, without reading the tokens
    other = torch.from_numpy(semantic.tokens(pairs[(index + shift) % len(pairs)][1])[0])
    if other.numel() == 0:
        return torch.zeros(n, dtype=other.dtype)
    return other.repeat(-(-n // other.numel()))[:n]


class _Windows(Dataset):
    """Shared machinery: epoch-seeded randomness, padding, loss mask."""

    def __init__(self, layout, seed: int, edge_probability: float):
        if not 0.0 <= edge_probability <= 1.0:
            raise InputError(f"edge_probability must be in [0, 1], got {edge_probability}")
        self.layout, self.seed, self.edge_probability = layout, seed, edge_probability
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, index))

    def _start(self, index: int, n: int, length: int) -> int:
        return window_start(n, length, self._rng(index), self.edge_probability)

    def _item(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        size = self.layout.max_length - 1
        inputs = torch.full((size,), self.layout.pad, dtype=torch.long)
        target = torch.full((size,), IGNORE, dtype=torch.long)
        n = ids.shape[0] - 1
        inputs[:n] = ids[:-1]
        target[:n] = ids[1:]
        target[: max(0, self.layout.prefix_length - 1)] = IGNORE
        return {"input": inputs, "target": target}


class SemanticDataset(_Windows):
    """[BOS] window of semantic tokens [EOS] (optionally with consecutive repeats removed)."""

    def __init__(
        self,
        shards: TokenShards,
        layout: SemanticLayout,
        *,
        dedup: bool = False,
        seed: int = 0,
        edge_probability: float = 0.2,
    ):
        super().__init__(layout, seed, edge_probability)
        self.shards, self.dedup = shards, dedup
        self.indices = [i for i, e in enumerate(shards.entries) if e.frames > 0]
        if not self.indices:
            raise InputError(f"{shards.root}: no utterance with semantic tokens")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        tokens = torch.from_numpy(self.shards.tokens(self.indices[index])[0])
        if self.dedup:
            tokens = dedup(tokens)
        n = tokens.shape[0]
        start = self._start(index, n, self.layout.window)
        end = min(start + self.layout.window, n)
        ids = self.layout.sequence(tokens[start:end], bos=start == 0, eos=end == n)
        return self._item(ids)


class CoarseDataset(_Windows):
    """Semantic tokens of a window, SEP, its first Q' acoustic levels frame by frame.

    `semantic_shift` > 0 gives each window the semantic tokens of another utterance (the one
    that many places on in the dataset, cycled), tiled or cut to the length of its own: the same
    windows and targets, the wrong content. What the model loses on them measures how much it
    uses its semantic tokens (`segue.lm.evaluate.ConditioningReport`)."""

    def __init__(
        self,
        semantic: TokenShards,
        acoustic: TokenShards,
        layout: CoarseLayout,
        *,
        seed: int = 0,
        edge_probability: float = 0.2,
        semantic_shift: int = 0,
    ):
        super().__init__(layout, seed, edge_probability)
        self.semantic_shift = check_shift(semantic_shift)
        if acoustic.levels < layout.n_target_levels:
            raise InputError(
                f"{acoustic.root}: {acoustic.levels} levels, the layout needs "
                f"{layout.n_target_levels}"
            )
        self.semantic, self.acoustic = semantic, acoustic
        self.pairs = join_utterances(semantic, acoustic)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        a, _ = self.pairs[index]
        layout = self.layout
        semantic = conditioning_tokens(self.semantic, self.pairs, index, self.semantic_shift)
        acoustic = torch.from_numpy(self.acoustic.tokens(a)[: layout.n_target_levels])
        r = layout.ratio
        ts = min(semantic.shape[0], math.ceil(acoustic.shape[1] / r))
        ta = min(acoustic.shape[1], r * ts)
        start = self._start(index, ts, layout.window)
        end = min(start + layout.window, ts)
        frames = acoustic[:, r * start : min(r * end, ta)]
        ids = layout.sequence(semantic[start:end], frames, eos=end == ts)
        return self._item(ids)


class FineDataset(_Windows):
    """Coarse levels of a window frame by frame, SEP, its fine levels frame by frame."""

    def __init__(
        self,
        acoustic: TokenShards,
        layout: FineLayout,
        *,
        seed: int = 0,
        edge_probability: float = 0.2,
    ):
        super().__init__(layout, seed, edge_probability)
        self.levels = layout.n_coarse + layout.n_target_levels
        if acoustic.levels < self.levels:
            raise InputError(
                f"{acoustic.root}: {acoustic.levels} levels, the layout needs {self.levels}"
            )
        self.acoustic = acoustic
        self.indices = [i for i, e in enumerate(acoustic.entries) if e.frames > 0]
        if not self.indices:
            raise InputError(f"{acoustic.root}: no utterance with acoustic tokens")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        acoustic = torch.from_numpy(self.acoustic.tokens(self.indices[index])[: self.levels])
        n, q = acoustic.shape[1], self.layout.n_coarse
        start = self._start(index, n, self.layout.window)
        end = min(start + self.layout.window, n)
        window = acoustic[:, start:end]
        return self._item(self.layout.sequence(window[:q], window[q:], eos=end == n))


class WithMismatched(Dataset):
    """Item i of `own`, with item i of `mismatched` (the same windows built with a
    `semantic_shift`: another utterance's semantic tokens) under the key "mismatched".
    Validation scores both: the loss the right semantic tokens save is the semantic gain."""

    def __init__(self, own: Dataset, mismatched: Dataset):
        if len(own) != len(mismatched):
            raise InputError(f"{len(own)} own items but {len(mismatched)} mismatched ones")
        self.own, self.mismatched = own, mismatched

    def set_epoch(self, epoch: int) -> None:
        for dataset in (self.own, self.mismatched):
            dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.own)

    def __getitem__(self, index: int) -> dict:
        return {**self.own[index], "mismatched": self.mismatched[index]}


class FirstItems(Dataset):
    """The first n items of a dataset (validation: fixed windows, epoch 0)."""

    def __init__(self, dataset: Dataset, n: int | None):
        self.dataset = dataset
        self.n = len(dataset) if n is None else min(n, len(dataset))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        return self.dataset[index]
