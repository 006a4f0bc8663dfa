"""Training windows: BOS/EOS only at a file's real start/end, alignment, loss mask, seeding."""

import numpy as np
import pytest
import torch

from segue.data.shards import TokenShards
from segue.errors import InputError
from segue.lm.data import IGNORE, CoarseDataset, FineDataset, SemanticDataset, window_start
from segue.lm.layout import CoarseLayout, FineLayout, SemanticLayout
from tests.lm.synthetic import K_A, K_S, LEVELS, N_COARSE, acoustic_tokens


def semantic_layout(window=30):
    return SemanticLayout(n_codes=K_S, window=window)


def coarse_layout(window=10):
    return CoarseLayout(
        n_codes=K_S + N_COARSE * K_A,
        acoustic_vocab=K_A,
        first_level=0,
        n_target_levels=N_COARSE,
        semantic_vocab=K_S,
        window=window,
        ratio=2,
    )


def fine_layout(window=24):
    return FineLayout(
        n_codes=LEVELS * K_A,
        acoustic_vocab=K_A,
        first_level=N_COARSE,
        n_target_levels=LEVELS - N_COARSE,
        n_coarse=N_COARSE,
        window=window,
    )


class ArangeShards:
    """In-memory stand-in for TokenShards: file i holds tokens 0, 1, ..., n_i - 1."""

    root = "memory"

    def __init__(self, lengths):
        self.lengths = lengths
        self.entries = [type("Entry", (), {"frames": n})() for n in lengths]

    def tokens(self, i):
        return np.arange(self.lengths[i])[None]


def test_bos_and_eos_only_where_the_window_meets_the_file_edges():
    layout = SemanticLayout(n_codes=100, window=12)
    data = SemanticDataset(ArangeShards([5, 12, 13, 40, 90]), layout, seed=0, edge_probability=0.3)
    seen = {"bos": 0, "eos": 0, "neither": 0}
    for epoch in range(30):
        data.set_epoch(epoch)
        for i, n in enumerate(data.shards.lengths):
            item = data[i]
            assert item["input"].shape == item["target"].shape == (layout.max_length - 1,)
            real = item["target"] != IGNORE
            content = torch.cat([item["input"][:1], item["target"][real]])
            bos, eos = bool(content[0] == layout.bos), bool(content[-1] == layout.eos)
            body = content[int(bos) : len(content) - int(eos)]
            first, last = int(body[0]), int(body[-1])
            assert torch.equal(body, torch.arange(first, last + 1))  # a slice of the file
            assert len(body) == min(n, 12)
            assert bos == (first == 0) and eos == (last == n - 1)
            assert layout.bos not in content[1:] and layout.eos not in content[:-1]
            seen["bos"] += bos
            seen["eos"] += eos
            seen["neither"] += not bos and not eos
    assert all(v > 0 for v in seen.values())


def test_coarse_windows_align_two_frames_per_semantic_token(shards):
    sem, ac = TokenShards(shards[0]), TokenShards(shards[1])
    layout = coarse_layout(window=10)
    data = CoarseDataset(sem, ac, layout, seed=0, edge_probability=0.3)
    assert len(data) == len(sem)
    eos_seen = 0
    for epoch in range(3):
        data.set_epoch(epoch)
        for i in range(len(data)):
            item = data[i]
            inputs, target = item["input"], item["target"]
            semantic = inputs[: layout.window]
            assert inputs[layout.window] == layout.sep
            assert (target[: layout.window] == IGNORE).all()  # no loss on the condition
            real = semantic[semantic != layout.pad]
            frames = target[layout.window :]
            frames = frames[frames != IGNORE]
            eos = bool(frames[-1] == layout.eos)
            eos_seen += eos
            codes = layout.unflatten(frames[: len(frames) - eos])
            assert codes.shape[1] <= 2 * len(real)
            np.testing.assert_array_equal(
                codes.numpy(), acoustic_tokens(real.numpy(), codes.shape[1])[:N_COARSE]
            )
    assert eos_seen > 0


def test_mismatched_coarse_windows_keep_the_targets_and_change_the_content(shards):
    """semantic_shift: the same windows and targets, another utterance's semantic tokens (tiled
    to the own ones' length) as the condition: what `lm eval --mismatched-semantic` scores."""
    sem, ac = TokenShards(shards[0]), TokenShards(shards[1])
    layout = coarse_layout(window=10)
    own = CoarseDataset(sem, ac, layout, seed=0, edge_probability=0.3)
    shifted = CoarseDataset(sem, ac, layout, seed=0, edge_probability=0.3, semantic_shift=5)
    n = len(own)
    changed = 0
    for i in range(n):
        a, b = own[i], shifted[i]
        torch.testing.assert_close(a["target"], b["target"])
        torch.testing.assert_close(a["input"][layout.window :], b["input"][layout.window :])
        mine = sem.tokens(own.pairs[i][1])[0]
        other = sem.tokens(own.pairs[(i + 5) % n][1])[0]
        tiled = np.resize(other, mine.shape[0])  # repeated to the own length
        own_prefix, prefix = (x["input"][: layout.window] for x in (a, b))
        own_prefix, prefix = (x[x != layout.pad].numpy() for x in (own_prefix, prefix))
        length = len(own_prefix)
        starts = [k for k in range(len(mine)) if np.array_equal(own_prefix, mine[k : k + length])]
        # the same span of the other utterance's (tiled) tokens as the own window took
        assert any(np.array_equal(prefix, tiled[k : k + length]) for k in starts)
        changed += not torch.equal(a["input"], b["input"])
    assert changed >= n - 2  # the synthetic utterances are ramps: a few windows coincide
    with pytest.raises(InputError, match="semantic_shift"):
        CoarseDataset(sem, ac, layout, semantic_shift=-1)


def test_fine_windows_condition_on_the_same_frames(shards):
    ac = TokenShards(shards[1])
    layout = fine_layout(window=24)
    data = FineDataset(ac, layout, seed=0)
    item = data[0]
    inputs, target = item["input"], item["target"]
    cut = layout.prefix_length
    assert inputs[cut - 1] == layout.sep and (target[: cut - 1] == IGNORE).all()
    coarse_ids = inputs[: cut - 1]
    coarse_ids = coarse_ids[coarse_ids != layout.pad]
    from segue.lm.layout import unflatten_levels

    coarse = unflatten_levels(coarse_ids, torch.tensor([0, K_A]))
    fine_ids = target[cut - 1 :]
    fine_ids = fine_ids[(fine_ids != IGNORE) & (fine_ids != layout.eos)]
    fine = layout.unflatten(fine_ids)
    assert fine.shape == coarse.shape
    expected = [(coarse[0] + coarse[1] + q) % K_A for q in range(LEVELS - N_COARSE)]
    np.testing.assert_array_equal(fine.numpy(), torch.stack(expected).numpy())


def test_windows_are_reproducible_per_seed_epoch_and_index(shards):
    sem = TokenShards(shards[0])
    a = SemanticDataset(sem, semantic_layout(window=8), seed=5)
    b = SemanticDataset(sem, semantic_layout(window=8), seed=5)
    assert all(torch.equal(a[i]["input"], b[i]["input"]) for i in range(len(a)))
    b.set_epoch(1)
    assert any(not torch.equal(a[i]["input"], b[i]["input"]) for i in range(len(a)))


def test_window_start_edges():
    rng = np.random.default_rng(0)
    starts = [window_start(100, 10, rng, 0.5) for _ in range(4000)]
    assert starts.count(0) > 800 and starts.count(90) > 800
    assert window_start(5, 10, rng, 0.0) == 0 and max(starts) == 90


def test_dedup_dataset_and_missing_joins(shards, tmp_path):
    sem = TokenShards(shards[0])
    data = SemanticDataset(sem, semantic_layout(window=200), dedup=True, seed=0)
    content = data[0]["target"][data[0]["target"] != IGNORE]
    body = content[content < K_S]
    assert (body[1:] != body[:-1]).all()
    from tests.lm.synthetic import write_shards

    other_sem, _ = write_shards(tmp_path / "other", n_files=2)
    renamed = TokenShards(other_sem)
    for e in renamed.entries:
        e.key = "elsewhere/" + e.key
    with pytest.raises(ValueError, match="join on"):
        CoarseDataset(renamed, TokenShards(shards[1]), coarse_layout())
