"""Datasets: manifests, splits, crop datasets and the synthetic corpus builders."""
