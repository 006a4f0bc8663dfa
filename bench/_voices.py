"""Shared by the voice benchmarks: a seeded sample of a manifest's voices and utterances."""

from __future__ import annotations

import random
from collections import defaultdict

from segue.data.manifest import Manifest, ManifestEntry


def sample_voices(
    manifest: Manifest, voices: int, per_voice: int, min_seconds: float, seed: int
) -> dict[str, list[ManifestEntry]]:
    """Up to `voices` random groups with `per_voice` utterances of at least `min_seconds`:
    {group: its randomly chosen entries}, groups sorted by name."""
    rng = random.Random(seed)
    by_group = defaultdict(list)
    for entry in manifest.entries:
        if entry.duration >= min_seconds:
            by_group[entry.group].append(entry)
    groups = sorted(g for g in by_group if len(by_group[g]) >= per_voice)
    rng.shuffle(groups)
    return {g: rng.sample(by_group[g], per_voice) for g in sorted(groups[:voices])}
