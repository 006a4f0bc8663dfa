"""Eval metrics on sequences with known distances."""

import numpy as np
import pytest

from segue.semantic.metrics import dedup, edit_distance, normalized_edit_distance, perplexity


def test_dedup():
    assert dedup([1, 1, 2, 2, 2, 1, 3, 3]).tolist() == [1, 2, 1, 3]
    assert dedup([]).tolist() == [] and dedup([5]).tolist() == [5]
    assert dedup(np.array([[4, 4, 4]])).tolist() == [4]


@pytest.mark.parametrize(
    "a, b, distance",
    [
        ([], [], 0),
        ([1, 2, 3], [], 3),
        ([1, 2, 3], [1, 2, 3], 0),
        ([1, 2, 3], [1, 9, 3], 1),  # substitution
        ([1, 2, 3], [1, 3], 1),  # deletion
        ([1, 3], [1, 2, 3], 1),  # insertion
        (list(b"kitten"), list(b"sitting"), 3),
        (list(b"flaw"), list(b"lawn"), 2),
        ([1, 2, 3, 4], [4, 3, 2, 1], 4),
    ],
)
def test_edit_distance_known_values(a, b, distance):
    assert edit_distance(a, b) == distance == edit_distance(b, a)


def reference(a, b):
    d = np.zeros((len(a) + 1, len(b) + 1), dtype=int)
    d[:, 0], d[0] = np.arange(len(a) + 1), np.arange(len(b) + 1)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i, j] = min(
                d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (a[i - 1] != b[j - 1])
            )
    return d[-1, -1]


def test_edit_distance_matches_textbook_dp():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b = rng.integers(0, 4, rng.integers(0, 15)), rng.integers(0, 4, rng.integers(0, 15))
        assert edit_distance(a, b) == reference(a, b)


def test_normalized_edit_distance_and_perplexity():
    assert normalized_edit_distance([1, 2, 3, 4], [1, 2]) == 0.5
    assert normalized_edit_distance([], []) == 0.0
    assert normalized_edit_distance([1, 2], [3, 4]) == 1.0
    assert perplexity([np.array([0, 1, 2, 3])], 8) == pytest.approx(4.0)
    assert perplexity([np.array([5, 5]), np.array([5])], 8) == pytest.approx(1.0)
    assert perplexity([], 4) == 0.0
