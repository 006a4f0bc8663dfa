"""Span masks: counts, span lengths, shapes, padding never masked, seeded."""

import pytest
import torch

from segue.semantic.masking import frame_mask, span_mask


def test_shapes_and_padding_never_masked():
    lengths = torch.tensor([100, 40, 7, 3])
    mask = span_mask(lengths, 100, 0.16, 5, min_spans=1, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (4, 100) and mask.dtype == torch.bool
    assert not (mask & ~frame_mask(lengths, 100)).any()
    assert mask[0].any() and mask[1].any() and mask[2].any()
    assert not mask[3].any()  # shorter than one span: nothing to mask


def test_span_count_and_length():
    # One span: exactly `span` consecutive frames.
    one = span_mask(torch.tensor([50]), 50, 0.0, 5, min_spans=1)
    idx = one[0].nonzero().flatten()
    assert len(idx) == 5 and (idx.diff() == 1).all()
    # Many examples: the number of starts is floor(p * n + u), so the masked share is
    # about 1 - (1 - p)^span (overlapping spans) and every run of masked frames is >= span.
    lengths = torch.full((200,), 250)
    mask = span_mask(lengths, 250, 0.16, 5, generator=torch.Generator().manual_seed(1))
    share = mask.float().mean().item()
    assert 0.45 < share < 0.65
    row = torch.cat([torch.tensor([False]), mask[0], torch.tensor([False])]).int()
    starts, ends = (row.diff() == 1).nonzero(), (row.diff() == -1).nonzero()
    assert ((ends - starts) >= 5).all()


def test_seeded_and_validated():
    lengths = torch.tensor([60, 80])
    a = span_mask(lengths, 80, 0.2, 4, generator=torch.Generator().manual_seed(3))
    b = span_mask(lengths, 80, 0.2, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(ValueError):
        span_mask(lengths, 80, 1.5, 4)
