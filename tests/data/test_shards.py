import os
from pathlib import Path

import numpy as np
import pytest

from segue.data.manifest import ManifestEntry, read_manifest, write_manifest
from segue.data.shards import (
    ShardError,
    TokenShards,
    TokenShardWriter,
    merge_index,
    tokenize_manifest,
)
from tests.conftest import write


def fake_tokenize(audio: np.ndarray) -> np.ndarray:
    """Deterministic 2-level 'tokens' at 50 Hz from the audio itself."""
    frames = audio[: len(audio) // 320 * 320].reshape(-1, 320)
    level0 = np.clip((frames.mean(1) + 1) * 100, 0, 199).astype(np.int64)
    level1 = np.clip(np.abs(frames).max(1) * 199, 0, 199).astype(np.int64)
    return np.stack([level0, level1])


@pytest.fixture
def manifest(tmp_path):
    rng = np.random.default_rng(0)
    entries = []
    for i in range(7):
        seconds = 0.2 + 0.1 * i
        write(
            tmp_path / f"a/{i}.wav",
            rng.uniform(-0.9, 0.9, int(seconds * 16000)).astype(np.float32),
            subtype="FLOAT",
        )
        entries.append(
            ManifestEntry(
                f"a/{i}.wav",
                seconds,
                16000,
                f"g{i % 3}",
                split="test" if i == 6 else "train",
                extra={"text": str(i)},
            )
        )
    (tmp_path / "a/bad.wav").write_text("not audio")
    entries.append(ManifestEntry("a/bad.wav", 1.0, 16000, "g0", split="train"))
    write_manifest(tmp_path / "m.jsonl", entries)
    return read_manifest(tmp_path / "m.jsonl")


def run(manifest, out, **kwargs):
    return tokenize_manifest(
        manifest,
        out,
        fake_tokenize,
        kind="acoustic",
        levels=2,
        vocab_size=200,
        frame_rate=50,
        sample_rate=16000,
        **kwargs,
    )


def test_shard_tokens_equal_single_file_tokens(manifest, tmp_path):
    counts = run(manifest, tmp_path / "shards")
    assert counts == {"done": 7, "skipped": 0, "failed": 1}
    shards = TokenShards(tmp_path / "shards")
    assert len(shards) == 7 and shards.levels == 2
    from segue import audio

    for i, entry in enumerate(shards.entries):
        direct = fake_tokenize(audio.load(manifest.root / entry.key))
        np.testing.assert_array_equal(shards.tokens(i), direct)
        assert entry.info["text"] == entry.key.split("/")[1][0]
    assert len(TokenShards(tmp_path / "shards", split="test")) == 1


def test_resume_skips_finished_files_and_small_shards_split(manifest, tmp_path, monkeypatch):
    out = tmp_path / "shards"
    writer = TokenShardWriter(out, kind="acoustic", levels=2, vocab_size=200, frame_rate=50)
    writer.add("a/0.wav", fake_tokenize(np.zeros(3200, np.float32)), {"split": "train"})
    writer.flush()
    # A crash mid-append leaves a cut line: ignored, and that file is done again.
    with (out / "index.r0.jsonl").open("a") as handle:
        handle.write('{"key": "a/1.w')
    counts = run(manifest, out)
    assert counts["skipped"] == 1 and counts["done"] == 6
    assert len(TokenShards(out)) == 7


def test_ranks_split_the_work_and_merge(manifest, tmp_path):
    out = tmp_path / "shards"
    for rank in range(2):
        run(manifest, out, rank=rank, world_size=2)
    merge_index(out)
    single = tmp_path / "single"
    run(manifest, single)
    a, b = TokenShards(out), TokenShards(single)
    assert [e.key for e in a.entries] == [e.key for e in b.entries]
    for i in range(len(a)):
        np.testing.assert_array_equal(a.tokens(i), b.tokens(i))
    assert {e.shard.split("_")[1] for e in a.entries} == {"r0", "r1"}


def test_writer_refuses_inconsistent_input(tmp_path):
    writer = TokenShardWriter(tmp_path, kind="semantic", levels=1, vocab_size=10, frame_rate=25)
    with pytest.raises(ShardError, match="expected tokens"):
        writer.add("x", np.zeros((2, 5), np.int64), {})
    with pytest.raises(ShardError, match="outside"):
        writer.add("x", np.full((1, 5), 10), {})
    with pytest.raises(ShardError, match="written with"):
        TokenShardWriter(tmp_path, kind="semantic", levels=1, vocab_size=20, frame_rate=25)
    with pytest.raises(ShardError, match="not a finished"):
        TokenShards(tmp_path)


def test_truncated_or_foreign_shards_are_found_when_the_folder_opens(tmp_path):
    """A shard cut short (a full disk, a killed copy) used to fail at the batch that reached it,
    several steps into a training; now opening the folder names it."""
    from tests.lm.synthetic import write_shards

    semantic, _ = write_shards(tmp_path / "ok")
    shards = TokenShards(semantic)
    assert len(shards) == 12
    shard = semantic / shards.entries[-1].shard
    data = shard.read_bytes()

    shard.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ShardError, match=f"{shard.name}: unreadable token shard"):
        TokenShards(semantic)
    np.save(shard, np.zeros((3, 2), np.int16))  # other levels
    with pytest.raises(ShardError, match=r"expected integer tokens \[rows, 1\]"):
        TokenShards(semantic)
    np.save(shard, np.zeros((1, 1), np.int16))  # too few rows for the index
    with pytest.raises(ShardError, match="needs rows"):
        TokenShards(semantic)
    shard.write_bytes(data)
    assert len(TokenShards(semantic)) == 12


def test_shards_written_column_major_read_the_same(tmp_path):
    """Shards from before the writer asked for C order are column-major .npy files: read per
    level, the same tokens as the row-major ones the writer makes now."""
    rng = np.random.default_rng(0)
    utterances = [rng.integers(0, 1024, (8, n)) for n in (5, 0, 17, 3)]
    writer = TokenShardWriter(tmp_path, kind="acoustic", levels=8, vocab_size=1024, frame_rate=50)
    for i, tokens in enumerate(utterances):
        writer.add(f"u{i}", tokens, {})
    writer.flush()
    merge_index(tmp_path)
    shard = next(tmp_path.glob("shard_*.npy"))
    rows = np.load(shard)
    assert rows.flags.c_contiguous
    np.save(shard, np.asfortranarray(rows))  # the older layout
    with shard.open("rb") as handle:
        np.lib.format.read_magic(handle)
        assert np.lib.format.read_array_header_1_0(handle)[1]  # fortran_order
    shards = TokenShards(tmp_path)
    for i, tokens in enumerate(utterances):
        np.testing.assert_array_equal(shards.tokens(i), tokens)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc (Linux)")
def test_reading_tokens_holds_no_file_open_and_no_more_memory(tmp_path):
    """A read takes an utterance's rows and nothing else: no file stays open (a large folder has
    thousands of shards) and memory does not grow as reads walk the folder (a memory map's
    touched pages count towards the process: ~16 MB here; bench/loader_rss.py at 10x)."""
    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    rng = np.random.default_rng(0)
    writer = TokenShardWriter(tmp_path, kind="acoustic", levels=8, vocab_size=1024,
                              frame_rate=50, shard_frames=1 << 16)  # fmt: skip
    for i in range(2000):
        writer.add(f"u{i:05d}", rng.integers(0, 1024, (8, 500)), {"split": "train"})
    writer.flush()
    merge_index(tmp_path)
    open_files = len(os.listdir("/proc/self/fd"))
    shards = TokenShards(tmp_path)
    assert len({e.shard for e in shards.entries}) == 16  # 16 MB of tokens
    before = rss()
    for i in rng.permutation(len(shards))[:500]:
        assert shards.tokens(int(i)).shape == (8, 500)
    assert rss() - before < 4 * 2**20
    assert len(os.listdir("/proc/self/fd")) == open_files
