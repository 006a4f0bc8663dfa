"""Layout specs: ids of codes, levels and specials never collide; flatten/unflatten round trip."""

import itertools

import pytest
import torch

from segue.lm.config import StageConfig
from segue.lm.layout import (
    CoarseLayout,
    FineLayout,
    SemanticLayout,
    dedup,
    flatten_levels,
    layout_for,
    unflatten_levels,
)


def stage(name, **kw):
    base = dict(semantic_vocab=500, acoustic_vocab=1024, n_coarse=3, n_levels=8)
    return StageConfig(stage=name, window_seconds=4.0, prompt_seconds=2.0, **{**base, **kw})


def all_layouts():
    return [layout_for(stage(name)) for name in ("semantic", "coarse", "fine")]


@pytest.mark.parametrize("layout", all_layouts(), ids=lambda x: type(x).__name__)
def test_specials_are_distinct_and_after_every_code(layout):
    specials = [layout.eos, layout.bos, layout.sep, layout.pad]
    assert len(set(specials)) == 4
    assert min(specials) == layout.n_codes and max(specials) == layout.vocab_size - 1
    for lo, hi in layout.target_ranges(8):
        assert 0 <= lo < hi <= layout.n_codes + (layout.eos + 1 == hi)


def test_level_ranges_tile_the_codes_without_overlap():
    coarse, fine = layout_for(stage("coarse")), layout_for(stage("fine"))
    assert coarse.n_codes == 500 + 3 * 1024 and coarse.vocab_size == coarse.n_codes + 4
    ranges = [(0, 500)] + [coarse.level_range(q) for q in range(3)]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges)) and ranges[-1][1] == 3572
    assert [fine.level_range(q) for q in (0, 7)] == [(0, 1024), (7 * 1024, 8 * 1024)]
    assert fine.n_codes == 8 * 1024
    # targets cycle through the stage's own levels, frame by frame
    assert coarse.target_ranges(4) == [coarse.level_range(q) for q in (0, 1, 2, 0)]
    assert fine.target_ranges(6) == [fine.level_range(q) for q in (3, 4, 5, 6, 7, 3)]
    assert layout_for(stage("semantic")).target_ranges(1) == [(0, 501)]  # codes or EOS


@pytest.mark.parametrize("name", ["coarse", "fine"])
def test_flatten_unflatten_round_trip(name):
    layout = layout_for(stage(name))
    codes = torch.randint(0, 1024, (2, layout.n_target_levels, 7))
    ids = layout.flatten(codes)
    assert ids.shape == (2, 7 * layout.n_target_levels)
    torch.testing.assert_close(layout.unflatten(ids), codes)
    # frame-major: frame 0's levels first, each in its own range
    ranges = layout.target_ranges(ids.shape[-1])
    assert all(lo <= int(i) < hi for i, (lo, hi) in zip(ids[0], ranges))
    levels = ids.reshape(2, 7, -1)
    for q in range(layout.n_target_levels):
        lo, hi = layout.level_range(layout.first_level + q)
        assert ((levels[..., q] >= lo) & (levels[..., q] < hi)).all()


def test_generic_flatten_helpers():
    offsets = torch.tensor([0, 10, 20])
    codes = torch.tensor([[1, 2], [3, 4], [5, 6]])
    assert flatten_levels(codes, offsets).tolist() == [1, 13, 25, 2, 14, 26]
    torch.testing.assert_close(unflatten_levels(flatten_levels(codes, offsets), offsets), codes)
    with pytest.raises(ValueError, match="whole frames"):
        unflatten_levels(torch.arange(5), offsets)


def test_semantic_sequence_has_bos_and_eos_only_when_asked():
    layout = SemanticLayout(n_codes=10, window=5)
    tokens = torch.tensor([1, 2, 3])
    assert layout.sequence(tokens, bos=True, eos=True).tolist() == [11, 1, 2, 3, 10]
    assert layout.sequence(tokens, bos=False, eos=False).tolist() == [1, 2, 3]
    assert layout.max_length == 7


def test_coarse_sequence_pads_the_semantic_block_to_the_window():
    layout = CoarseLayout(
        n_codes=10 + 2 * 4,
        acoustic_vocab=4,
        first_level=0,
        n_target_levels=2,
        semantic_vocab=10,
        window=3,
        ratio=2,
    )
    coarse = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])
    seq = layout.sequence(torch.tensor([7, 8]), coarse, eos=True)
    pad, sep, eos = layout.pad, layout.sep, layout.eos
    assert seq.tolist() == [7, 8, pad, sep, 10, 17, 11, 16, 12, 15, 13, 14, eos]
    assert layout.prefix_length == 4 and layout.frames == 6
    assert layout.max_length == 4 + 6 * 2 + 1
    with pytest.raises(ValueError, match="do not fit"):
        layout.prefix(torch.zeros(4, dtype=torch.long))


def test_fine_sequence_pads_the_coarse_block_to_the_window():
    layout = FineLayout(
        n_codes=3 * 4, acoustic_vocab=4, first_level=2, n_target_levels=1, n_coarse=2, window=3
    )
    coarse = torch.tensor([[1, 2], [3, 0]])
    seq = layout.sequence(coarse, torch.tensor([[2, 3]]), eos=False)
    assert seq.tolist() == [1, 7, 2, 4, layout.pad, layout.pad, layout.sep, 10, 11]
    assert layout.prefix_length == 7 and layout.max_length == 7 + 3 + 1


def test_layout_for_needs_token_spaces():
    with pytest.raises(ValueError, match="semantic_vocab"):
        layout_for(StageConfig(stage="semantic"))
    with pytest.raises(ValueError, match="n_levels"):
        layout_for(stage("fine", n_levels=3))
    with pytest.raises(ValueError, match="whole multiple"):
        layout_for(stage("coarse", acoustic_rate=75.0, semantic_rate=50.0))
    with pytest.raises(ValueError, match="prompt_seconds"):
        StageConfig(window_seconds=2.0, prompt_seconds=2.0)


def test_windows_follow_the_rates():
    assert layout_for(stage("semantic")).window == 100  # 4 s at 25 Hz
    coarse = layout_for(stage("coarse"))
    assert (coarse.window, coarse.frames, coarse.ratio) == (100, 200, 2)
    assert layout_for(stage("fine")).window == 200


def test_dedup_removes_consecutive_repeats_only():
    assert dedup(torch.tensor([5, 5, 2, 2, 2, 5, 1])).tolist() == [5, 2, 5, 1]


def test_shared_ids_carry_the_acoustic_levels_and_specials_across_semantic_vocabularies():
    from segue.lm.layout import CoarseLayout, shared_ids

    def coarse(s):
        return CoarseLayout(n_codes=s + 2 * 8, semantic_vocab=s, acoustic_vocab=8,
                            first_level=0, n_target_levels=2, window=5)  # fmt: skip

    old, new = coarse(16), coarse(10)
    new_ids, old_ids = shared_ids(old, new)
    assert len(new_ids) == 2 * 8 + 4  # no semantic code: the vocabularies differ
    pairs = dict(zip(new_ids.tolist(), old_ids.tolist()))
    for q in range(2):
        assert all(pairs[new.level_offset(q) + c] == old.level_offset(q) + c for c in range(8))
    assert (pairs[new.eos], pairs[new.sep], pairs[new.pad]) == (old.eos, old.sep, old.pad)
    same, _ = shared_ids(old, old)
    assert same.tolist() == list(range(old.vocab_size))  # one tokenizer: every id
    other, _ = shared_ids(old, old, semantic=False)
    assert min(other.tolist()) == 16  # another tokenizer of the same size: no semantic code
