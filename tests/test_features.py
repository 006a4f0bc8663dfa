"""Shared audio features: cached tensor builders stay usable for training after tokenizing."""

from __future__ import annotations

import torch

from segue.features import dct_matrix, log_mel_spectrogram, mel_filterbank, mfcc


def test_filters_first_built_under_inference_mode_still_train():
    mel_filterbank.cache_clear()
    dct_matrix.cache_clear()
    audio = torch.randn(1, 4000)
    with torch.inference_mode():  # tokenizing first, as a recipe does in one process
        log_mel_spectrogram(audio, 16000)
        mfcc(audio, 16000)
    assert not mel_filterbank(1024, 80, 16000).is_inference()
    assert not dct_matrix(13, 40).is_inference()
    x = torch.randn(1, 4000, requires_grad=True)
    (log_mel_spectrogram(x, 16000).sum() + mfcc(x, 16000).sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_mel_filters_shape_and_cache():
    filters = mel_filterbank(512, 40, 16000)
    assert filters.shape == (40, 257) and filters.dtype == torch.float32
    assert mel_filterbank(512, 40, 16000) is filters
    assert (filters >= 0).all() and (filters.sum(dim=1) > 0).all()
