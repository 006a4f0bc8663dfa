"""The rank-aware, resumable batch sampler."""

from __future__ import annotations

from segue.train.distributed import ResumableBatchSampler


def _batches(size, batch, world, epoch=0, start=0, **kw):
    out = []
    for rank in range(world):
        sampler = ResumableBatchSampler(size, batch, rank=rank, world_size=world, seed=5, **kw)
        sampler.set_position(epoch, start)
        out.append(list(sampler))
    return out


def test_ranks_together_equal_one_process_with_the_whole_batch():
    (single,) = _batches(40, 8, 1)
    ranks = _batches(40, 4, 2)
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 5
    for i, batch in enumerate(single):
        assert sorted(ranks[0][i] + ranks[1][i]) == sorted(batch)
    shard0, shard1 = ({i for b in batches for i in b} for batches in ranks)
    assert not shard0 & shard1


def test_epochs_differ_and_are_reproducible():
    assert _batches(40, 8, 1, epoch=0) != _batches(40, 8, 1, epoch=1)
    assert _batches(40, 8, 1, epoch=3) == _batches(40, 8, 1, epoch=3)


def test_resume_position():
    (full,) = _batches(40, 8, 1, epoch=2)
    (rest,) = _batches(40, 8, 1, epoch=2, start=3)
    assert rest == full[3:]


def test_uneven_sizes():
    ranks = _batches(43, 4, 3)  # 14 per rank -> 3 full batches each, the tail dropped
    assert [len(r) for r in ranks] == [3, 3, 3]
    (valid,) = _batches(10, 4, 1, shuffle=False, drop_last=False)
    assert valid == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
