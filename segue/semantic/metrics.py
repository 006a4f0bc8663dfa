"""Token-sequence metrics for `segue semantic eval`: deduplication, (normalised) edit distance,
cluster perplexity."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def dedup(tokens: np.ndarray | Iterable[int]) -> np.ndarray:
    """Collapse runs of repeated tokens: [1, 1, 2, 2, 2, 1] -> [1, 2, 1] (1-d int64)."""
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    if tokens.size == 0:
        return tokens
    keep = np.ones(tokens.size, dtype=bool)
    keep[1:] = tokens[1:] != tokens[:-1]
    return tokens[keep]


def edit_distance(a: np.ndarray | Iterable[int], b: np.ndarray | Iterable[int]) -> int:
    """Levenshtein distance (unit insert/delete/substitute costs) of two int sequences.

    Row-by-row DP, O(len(a) * len(b)) in numpy: within a row the insertion chain
    d[j] = min(d[j], d[j-1] + 1) is a running minimum of d[j] - j, plus j.
    """
    a = np.asarray(a, dtype=np.int64).reshape(-1)
    b = np.asarray(b, dtype=np.int64).reshape(-1)
    if a.size < b.size:
        a, b = b, a
    if b.size == 0:
        return int(a.size)
    columns = np.arange(b.size + 1)
    previous = columns.copy()
    for i, token in enumerate(a, 1):
        current = np.empty_like(previous)
        current[0] = i
        current[1:] = np.minimum(previous[1:] + 1, previous[:-1] + (b != token))
        current = np.minimum.accumulate(current - columns) + columns
        previous = current
    return int(previous[-1])


def normalized_edit_distance(a: np.ndarray | Iterable[int], b: np.ndarray | Iterable[int]) -> float:
    """Edit distance / max(len(a), len(b)), in [0, 1] (0.0 for two empty sequences)."""
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    longest = max(a.size, b.size)
    return edit_distance(a, b) / longest if longest else 0.0


def perplexity(sequences: Iterable[np.ndarray], vocab_size: int) -> float:
    """exp(entropy) of the token distribution over all `sequences`: the effective number of
    clusters in use (vocab_size when all are equally frequent)."""
    counts = np.zeros(vocab_size, dtype=np.float64)
    for tokens in sequences:
        counts += np.bincount(np.asarray(tokens, dtype=np.int64).reshape(-1), minlength=vocab_size)
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))
