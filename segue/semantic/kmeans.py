"""k-means codebooks for semantic tokens: fitted with faiss, applied in torch.

As in AudioLM (and HuBERT's unit extraction), each feature dimension is first normalised to
zero mean and unit variance over the fitting set, so no dimension dominates the Euclidean
distance; the mean/std are stored with the centroids and applied before every assignment.
Fitting is seeded and deterministic (faiss samples with `seed`; assignments are exact).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from segue.errors import InputError


class KMeansCodebook(nn.Module):
    """Normalisation (mean, std: [D]) + centroids [K, D] in normalised space, as buffers.

    `codebook(x)`: features [..., D] -> nearest-centroid ids [...] (int64).
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, centroids: torch.Tensor):
        super().__init__()
        if mean.shape != std.shape or centroids.dim() != 2 or centroids.shape[1] != mean.shape[0]:
            raise InputError(
                f"inconsistent codebook shapes: mean {tuple(mean.shape)}, std {tuple(std.shape)}, "
                f"centroids {tuple(centroids.shape)}"
            )
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("std", std.float().clone())
        self.register_buffer("centroids", centroids.float().clone())

    @property
    def k(self) -> int:
        return self.centroids.shape[0]

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        return (features.float() - self.mean) / self.std

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.normalize(features)
        flat = x.reshape(-1, self.dim)
        # argmin |x - c|^2 = argmax (2 x.c - |c|^2); chunked so long files stay small in memory.
        bias = (self.centroids**2).sum(dim=1)
        ids = (
            torch.cat(
                [(2 * chunk @ self.centroids.T - bias).argmax(dim=1) for chunk in flat.split(8192)]
            )
            if flat.shape[0]
            else flat.new_zeros(0, dtype=torch.long)
        )
        return ids.reshape(x.shape[:-1])


def normalization_stats(features: np.ndarray, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of [N, D] features (float64 sums; std floored at eps)."""
    mean = features.mean(axis=0, dtype=np.float64)
    std = np.sqrt(np.maximum(features.var(axis=0, dtype=np.float64), 0.0))
    return mean.astype(np.float32), np.maximum(std, eps).astype(np.float32)


def fit_kmeans(
    features: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    niter: int = 50,
    max_points_per_centroid: int = 256,
) -> tuple[KMeansCodebook, float]:
    """Fit a normalised k-means codebook on features [N, D]; returns (codebook, mean sq. error).

    faiss trains on at most k * max_points_per_centroid points (a seeded sample), then the
    error is measured on all N. Same features + same seed -> same centroids.
    """
    import faiss

    features = np.ascontiguousarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise InputError(f"expected features [N, D], got shape {features.shape}")
    if not np.isfinite(features).all():
        raise InputError("features contain NaN or infinite values")
    if features.shape[0] < k:
        raise InputError(
            f"k-means with k={k} needs at least {k} feature frames, got {features.shape[0]} "
            "(use more audio or a smaller k)"
        )
    mean, std = normalization_stats(features)
    normalized = np.ascontiguousarray((features - mean) / std, dtype=np.float32)
    kmeans = faiss.Kmeans(
        normalized.shape[1],
        k,
        niter=niter,
        seed=seed,
        verbose=False,
        max_points_per_centroid=max_points_per_centroid,
    )
    kmeans.train(normalized)
    codebook = KMeansCodebook(
        torch.from_numpy(mean), torch.from_numpy(std), torch.from_numpy(kmeans.centroids.copy())
    )
    distances, _ = kmeans.index.search(normalized, 1)
    return codebook, float(distances.mean())
