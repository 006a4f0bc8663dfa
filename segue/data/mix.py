"""Mixtures of corpora: one manifest over several, each part drawn by its weight.

`mix_manifests` writes a manifest whose rows point into each part's folder (paths relative to
the mixed manifest, so a tree of corpora moves as a whole), tags every row with its `part`,
keeps each part's splits, and writes the parts' weights beside it (`NAME.parts.json`).
`CropDataset` reads that file: a crop comes from part p with probability w_p / sum(w), then from
a file of that part, so a 4 h TTS corpus and a 6 h real one mixed 50/50 give half the crops
to each, not 40/60 by hours.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segue.config import write_atomic
from segue.data.manifest import (
    Manifest,
    ManifestEntry,
    ManifestError,
    beside,
    read_manifest,
    splits_path_for,
    write_manifest,
    write_splits,
)
from segue.errors import InputError


@dataclass(frozen=True)
class Part:
    """One corpus of a mixture: its name (the rows' `part`), manifest and sampling weight."""

    name: str
    manifest: str | os.PathLike
    weight: float = 1.0


def parts_path_for(manifest_path: str | os.PathLike) -> Path:
    """`DIR/name.jsonl` -> `DIR/name.parts.json`, the part weights that go with a manifest."""
    return beside(manifest_path, ".parts.json")


def read_part_weights(manifest_path: str | os.PathLike) -> dict[str, float] | None:
    """The part weights beside a manifest, or None when it is not a mixture."""
    path = parts_path_for(manifest_path)
    if not path.is_file():
        return None
    try:
        weights = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ManifestError(f"{path}: cannot read part weights ({error})") from error
    if not isinstance(weights, dict) or not all(
        isinstance(w, (int, float)) and w >= 0 for w in weights.values()
    ):
        raise ManifestError(f"{path}: part weights must map part names to numbers >= 0")
    return {str(k): float(v) for k, v in weights.items()}


def write_part_weights(manifest_path: str | os.PathLike, weights: dict[str, float]) -> Path:
    """Write the part weights beside a manifest (atomically); returns their path."""
    path = parts_path_for(manifest_path)
    write_atomic(path, (json.dumps(weights, indent=1) + "\n").encode())
    return path


def entry_probabilities(
    manifest: Manifest, part_weights: dict[str, float] | None
) -> np.ndarray | None:
    """Per-row sampling probabilities [N] of a mixture: each part gets its weight (among the
    parts present), shared equally by its rows; None when `part_weights` is None."""
    if part_weights is None:
        return None
    parts = [str(e.extra.get("part", "")) for e in manifest.entries]
    unknown = sorted(set(parts) - set(part_weights))
    if unknown:
        raise InputError(f"rows of parts {unknown} have no weight in {part_weights}")
    counts = Counter(parts)
    weights = np.array([part_weights[name] / counts[name] for name in parts], dtype=np.float64)
    if weights.sum() <= 0:
        raise InputError(f"every part present has weight 0: {part_weights}")
    return weights / weights.sum()


def parse_part(text: str) -> Part:
    """`NAME=MANIFEST[:WEIGHT]` or `MANIFEST[:WEIGHT]` (the name: the manifest's folder)."""
    name, sep, rest = text.partition("=")
    if not sep:
        name, rest = "", text
    path, colon, weight = rest.rpartition(":")
    if not colon or not _is_number(weight):
        path, weight = rest, "1"
    name = name or Path(path).parent.name or Path(path).stem
    return Part(name, path, float(weight))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def mix_manifests(parts: Sequence[Part], out: str | os.PathLike) -> Path:
    """Write the mixture of `parts` to the manifest `out` (+ its splits and part weights).

    Rows keep their fields and split (from the row or the part's split file) and gain `part`;
    paths are rewritten relative to `out`'s folder. Raises ManifestError for an empty or
    duplicated part name, a negative weight, all-zero weights, or a group found in two parts
    (a group is a speaker: it must keep one split).
    """
    if not parts:
        raise ManifestError("a mixture needs at least one part")
    names = [p.name for p in parts]
    if len(set(names)) != len(names) or not all(names):
        raise ManifestError(f"part names must be unique and non-empty, got {names}")
    if any(p.weight < 0 for p in parts) or not any(p.weight > 0 for p in parts):
        raise ManifestError("part weights must be >= 0, and one at least > 0")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    entries: list[ManifestEntry] = []
    owner: dict[str, str] = {}
    for part in parts:
        manifest = read_manifest(part.manifest)
        if not manifest.entries:
            raise ManifestError(f"{part.manifest}: part {part.name!r} is empty")
        for entry in manifest.entries:
            if owner.setdefault(entry.group, part.name) != part.name:
                raise ManifestError(
                    f"group {entry.group!r} is in parts {owner[entry.group]!r} and "
                    f"{part.name!r}: rename one (a group must keep one split)"
                )
            path = os.path.relpath(manifest.resolve(entry).resolve(), out.parent.resolve())
            entries.append(
                ManifestEntry(
                    Path(path).as_posix(),
                    entry.duration,
                    entry.sample_rate,
                    entry.group,
                    entry.split,
                    {**entry.extra, "part": part.name},
                )
            )
    write_manifest(out, entries)
    splits: dict[str, set[str]] = {}
    for entry in entries:
        if entry.split is not None:
            splits.setdefault(entry.split, set()).add(entry.group)
    write_splits(splits_path_for(out), {k: sorted(v) for k, v in splits.items()})
    write_part_weights(out, {p.name: p.weight for p in parts})
    return out
