"""Mixed corpora: the mixed manifest, its splits and weights, and crops drawn by part weight."""

import collections
import json

import numpy as np
import pytest

from segue.data.crops import CropDataset
from segue.data.manifest import (
    ManifestEntry,
    ManifestError,
    read_manifest,
    read_splits,
    splits_path_for,
    write_manifest,
    write_splits,
)
from segue.data.mix import Part, mix_manifests, parse_part, parts_path_for, read_part_weights
from tests.conftest import write


def corpus(root, prefix, files, seconds=0.5, split_of=None):
    """A corpus folder: `files` one-group-each files with a split file."""
    entries = []
    for i in range(files):
        group = f"{prefix}{i}"
        write(root / group / "a.wav", np.full(int(seconds * 16000), 0.1, np.float32))
        entries.append(ManifestEntry(f"{group}/a.wav", seconds, 16000, group, None,
                                     {"source": prefix}))
    write_manifest(root / "manifest.jsonl", entries)
    splits = collections.defaultdict(list)
    for e in entries:
        splits[(split_of or (lambda g: "train"))(e.group)].append(e.group)
    write_splits(splits_path_for(root / "manifest.jsonl"), dict(splits))
    return root / "manifest.jsonl"


def test_mix_rewrites_paths_keeps_splits_and_writes_weights(tmp_path):
    tts = corpus(tmp_path / "tts", "tts", 8, split_of=lambda g: "test" if g == "tts7" else "train")
    real = corpus(tmp_path / "deep" / "real", "real", 2, split_of=lambda g: "valid"
                  if g == "real1" else "train")
    out = mix_manifests([Part("speech", tts, 0.25), Part("real", real, 0.75)],
                        tmp_path / "mix" / "manifest.jsonl")
    manifest = read_manifest(out)
    assert len(manifest) == 10
    assert all(manifest.resolve(e).is_file() for e in manifest)  # paths relative to mix/
    assert {e.extra["part"] for e in manifest} == {"speech", "real"}
    assert all(e.extra["source"] in ("tts", "real") for e in manifest)  # fields kept
    assert {e.group: e.split for e in manifest}["tts7"] == "test"
    splits = read_splits(splits_path_for(out))
    assert splits["valid"] == ["real1"] and "tts7" in splits["test"]
    assert read_part_weights(out) == {"speech": 0.25, "real": 0.75}
    assert read_part_weights(tts) is None


def test_crops_follow_part_weights_not_hours(tmp_path):
    tts = corpus(tmp_path / "tts", "tts", 18)  # 18 files vs 2: 90 % of the files
    real = corpus(tmp_path / "real", "real", 2)
    out = mix_manifests([Part("speech", tts, 0.5), Part("real", real, 0.5)],
                        tmp_path / "manifest.jsonl")
    ds = CropDataset(out, crop_seconds=0.25, split="train", seed=3)
    assert len(ds) == 20
    parts = collections.Counter()
    for epoch in range(20):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            parts[ds.manifest.entries[ds.file_index(i)].extra["part"]] += 1
    share = parts["real"] / sum(parts.values())
    assert 0.44 < share < 0.56, share  # by weight (0.5), not by files (0.1)
    item = ds[0]
    assert ds.manifest.entries[item["index"]] is ds.manifest.entries[ds.file_index(0)]
    # Reproducible: the same draw for the same (seed, epoch, item).
    again = CropDataset(out, crop_seconds=0.25, split="train", seed=3)
    again.set_epoch(19)
    assert [again.file_index(i) for i in range(20)] == [ds.file_index(i) for i in range(20)]
    # Without a weights file, every file once per epoch, as before.
    plain = CropDataset(tts, crop_seconds=0.25, split="train")
    assert [plain.file_index(i) for i in range(len(plain))] == list(range(18))


def test_zero_weight_part_is_never_drawn(tmp_path):
    tts = corpus(tmp_path / "tts", "tts", 3)
    real = corpus(tmp_path / "real", "real", 3)
    out = mix_manifests([Part("speech", tts, 1.0), Part("real", real, 0.0)],
                        tmp_path / "manifest.jsonl")
    ds = CropDataset(out, crop_seconds=0.25)
    drawn = {ds.manifest.entries[ds.file_index(i)].extra["part"] for i in range(len(ds))}
    assert drawn == {"speech"}


def test_bad_mixtures_are_clear_errors(tmp_path):
    a = corpus(tmp_path / "a", "g", 2)
    b = corpus(tmp_path / "b", "g", 2)  # same group names
    with pytest.raises(ManifestError, match="group 'g0' is in parts"):
        mix_manifests([Part("a", a), Part("b", b)], tmp_path / "m.jsonl")
    c = corpus(tmp_path / "c", "c", 1)
    with pytest.raises(ManifestError, match="unique"):
        mix_manifests([Part("a", a), Part("a", c)], tmp_path / "m.jsonl")
    with pytest.raises(ManifestError, match="weights"):
        mix_manifests([Part("a", a, 0.0), Part("c", c, 0.0)], tmp_path / "m.jsonl")
    with pytest.raises(ManifestError, match="not found"):
        mix_manifests([Part("x", tmp_path / "nope.jsonl")], tmp_path / "m.jsonl")
    parts_path_for(a).write_text(json.dumps({"other": 1.0}))
    with pytest.raises(ValueError, match="no weight"):
        CropDataset(a, crop_seconds=0.25)
    parts_path_for(a).write_text("[1, 2]")
    with pytest.raises(ManifestError, match="part weights"):
        read_part_weights(a)


@pytest.mark.parametrize(("text", "part"), [
    ("real=corpora/real/manifest.jsonl:0.3", Part("real", "corpora/real/manifest.jsonl", 0.3)),
    ("corpora/real/manifest.jsonl", Part("real", "corpora/real/manifest.jsonl", 1.0)),
    ("tts=c:/x/m.jsonl", Part("tts", "c:/x/m.jsonl", 1.0)),
])
def test_parse_part(text, part):
    assert parse_part(text) == part


def test_cli_mix_and_stats_by_part_and_source(tmp_path, capsys):
    from segue.cli import main

    tts = corpus(tmp_path / "tts", "tts", 3)
    real = corpus(tmp_path / "real", "real", 2, seconds=1.0)
    out = tmp_path / "mix" / "manifest.jsonl"
    assert main(["data", "mix", f"speech={tts}:0.4", f"{real}:0.6", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "5 files" in printed and "speech" in printed and "real" in printed
    assert read_part_weights(out) == {"speech": 0.4, "real": 0.6}  # "real": the folder name
    assert main(["data", "stats", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "by part:" in printed and "by source:" in printed and "by group:" in printed
    lines = {line.split()[0]: line.split() for line in printed.splitlines() if line.strip()}
    assert lines["real"][1:3] == ["2", "0.001"]  # files, hours of the real part
    assert main(["data", "stats", str(out), "--by", "source"]) == 0
    assert "by group:" not in capsys.readouterr().out
    assert main(["data", "mix", f"a={tts}", f"b={tts}", "--out", str(out)]) == 2
    assert "group 'tts0' is in parts" in capsys.readouterr().err
