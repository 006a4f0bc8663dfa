"""Fit a tokenizer: extract features from a seeded sample of a manifest, then k-means them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from segue import audio as audio_io
from segue.data.manifest import Manifest
from segue.data.mix import entry_probabilities
from segue.errors import InputError
from segue.semantic.extractors import FeatureExtractor
from segue.semantic.kmeans import fit_kmeans
from segue.semantic.tokenizer import SemanticTokenizer


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU when it has none)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def collect_features(
    extractor: FeatureExtractor,
    manifest: Manifest,
    *,
    max_files: int = 500,
    max_frames: int = 200_000,
    max_seconds: float = 20.0,
    seed: int = 0,
    progress: bool = True,
    part_weights: dict[str, float] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Features [N, D] float32 of up to `max_files` files (a seeded sample, at most
    `max_seconds` of each), randomly subsampled to `max_frames` frames; plus counts.

    `part_weights` (a mixture's, `segue.data.mix`) samples the files of each part in
    proportion to its weight, as the training crops are, instead of uniformly."""
    if not manifest.entries:
        raise InputError("no files to fit k-means on (empty manifest or split)")
    rng = np.random.default_rng(seed)
    probabilities = entry_probabilities(manifest, part_weights)
    count = min(max_files, int(np.count_nonzero(probabilities)) if probabilities is not None
                else len(manifest.entries))
    if probabilities is None:
        order = rng.permutation(len(manifest.entries))[:max_files]
    else:
        order = rng.choice(len(manifest.entries), count, replace=False, p=probabilities)
    device = module_device(extractor)
    chunks, skipped = [], 0
    for index in tqdm(order, desc="features", unit="file", disable=not progress):
        entry = manifest.entries[int(index)]
        try:
            audio = audio_io.load(
                manifest.resolve(entry), extractor.sample_rate, duration=max_seconds
            )
        except audio_io.AudioError:
            skipped += 1
            continue
        with torch.autocast(device.type, enabled=False):
            features, frames = extractor(torch.from_numpy(audio)[None].to(device))
        chunks.append(features[0, : int(frames[0])].float().cpu().numpy())
    if not chunks:
        raise InputError(f"none of the {len(order)} sampled files could be read")
    features = np.concatenate(chunks)
    total = features.shape[0]
    if total > max_frames:
        keep = np.sort(np.random.default_rng(seed + 1).choice(total, max_frames, replace=False))
        features = features[keep]
    stats = {"files": len(chunks), "skipped_files": skipped, "frames": int(features.shape[0])}
    return features, stats


def fit_tokenizer(
    extractor: FeatureExtractor,
    manifest: Manifest,
    k: int,
    *,
    seed: int = 0,
    niter: int = 50,
    max_files: int = 500,
    max_frames: int = 200_000,
    max_seconds: float = 20.0,
    source: str = "",
    progress: bool = True,
    part_weights: dict[str, float] | None = None,
) -> SemanticTokenizer:
    """k-means (K = `k`) of `extractor` features on a sample of `manifest` -> a tokenizer."""
    features, stats = collect_features(
        extractor,
        manifest,
        max_files=max_files,
        max_frames=max_frames,
        max_seconds=max_seconds,
        seed=seed,
        progress=progress,
        part_weights=part_weights,
    )
    codebook, error = fit_kmeans(features, k, seed=seed, niter=niter)
    info = {**stats, "k": k, "seed": seed, "niter": niter, "mse": error, "source": source}
    return SemanticTokenizer(extractor, codebook.to(module_device(extractor)), info)
