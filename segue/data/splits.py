"""Deterministic train/valid/test splits by group (speaker, piece).

Held-out groups are chosen by a seeded hash of the group name, not by the order files were found,
so the same groups land in the same split on every machine and every re-scan. Valid/test groups
never appear in train: evaluation is always on unseen speakers or pieces.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from segue.data.manifest import read_manifest, splits_path_for, write_splits
from segue.errors import InputError


def _rank(group: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()


def check_fractions(valid: float, test: float) -> None:
    """Raise ValueError unless both shares are in [0, 1) and sum below 1."""
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise InputError(f"split fractions must be in [0, 1) and sum below 1, got {valid}, {test}")


def assign_splits(
    groups: Iterable[str], valid: float = 0.05, test: float = 0.05, seed: int = 0
) -> dict[str, list[str]]:
    """Split group names into {"train", "valid", "test"} lists.

    Each held-out split gets round(fraction * n) groups, at least one when the fraction is
    positive and there are at least three groups; train keeps the rest (never empty).
    """
    check_fractions(valid, test)
    names = sorted(set(groups), key=lambda g: _rank(g, seed))
    n = len(names)

    def count(fraction: float) -> int:
        if fraction <= 0 or n < 3:
            return 0
        return max(1, round(fraction * n))

    n_test, n_valid = count(test), count(valid)
    while n_test + n_valid >= n and n_test + n_valid > 0:  # keep at least one train group
        if n_valid >= n_test:
            n_valid -= 1
        else:
            n_test -= 1
    return {
        "test": sorted(names[:n_test]),
        "valid": sorted(names[n_test : n_test + n_valid]),
        "train": sorted(names[n_test + n_valid :]),
    }


def split_manifest(
    manifest_path: str | os.PathLike, valid: float = 0.05, test: float = 0.05, seed: int = 0
) -> tuple[Path, dict[str, list[str]]]:
    """Write the split file beside a manifest (`name.splits.json`); returns (path, splits)."""
    manifest = read_manifest(manifest_path)
    splits = assign_splits(manifest.groups, valid=valid, test=test, seed=seed)
    out = splits_path_for(manifest_path)
    write_splits(out, splits)
    return out, splits
