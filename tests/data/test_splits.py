import pytest

from segue.data.manifest import (
    ManifestEntry,
    ManifestError,
    read_manifest,
    write_manifest,
    write_splits,
)
from segue.data.splits import assign_splits, split_manifest


def test_splits_are_deterministic_and_disjoint():
    groups = [f"speaker{i}" for i in range(100)]
    a = assign_splits(groups, valid=0.1, test=0.05, seed=3)
    b = assign_splits(list(reversed(groups)), valid=0.1, test=0.05, seed=3)
    assert a == b
    assert (len(a["train"]), len(a["valid"]), len(a["test"])) == (85, 10, 5)
    assert set(a["train"]).isdisjoint(a["valid"]) and set(a["valid"]).isdisjoint(a["test"])
    assert sorted(a["train"] + a["valid"] + a["test"]) == sorted(groups)
    assert assign_splits(groups, 0.1, 0.05, seed=4) != a  # the seed matters


def test_adding_groups_keeps_most_assignments():
    before = assign_splits([f"g{i}" for i in range(200)], 0.1, 0.1)
    after = assign_splits([f"g{i}" for i in range(210)], 0.1, 0.1)
    moved = set(before["test"]) - set(after["test"])
    assert len(moved) <= 2


@pytest.mark.parametrize("n, expected", [(1, (1, 0, 0)), (2, (2, 0, 0)), (3, (1, 1, 1)),
                                         (10, (8, 1, 1))])
def test_small_group_counts(n, expected):
    s = assign_splits([str(i) for i in range(n)], 0.05, 0.05)
    assert (len(s["train"]), len(s["valid"]), len(s["test"])) == expected


def test_bad_fractions():
    with pytest.raises(ValueError):
        assign_splits(["a"], valid=0.6, test=0.5)


def test_manifest_takes_split_from_split_file(tmp_path):
    path = tmp_path / "m.jsonl"
    entries = [ManifestEntry(f"{g}/{i}.wav", 1.0, 16000, g) for g in "abcdef" for i in range(2)]
    write_manifest(path, entries)
    with pytest.raises(ManifestError, match="no split information"):
        read_manifest(path, split="train")
    _, splits = split_manifest(path, valid=0.2, test=0.2)
    for name in ("train", "valid", "test"):
        subset = read_manifest(path, split=name)
        assert {e.group for e in subset} == set(splits[name])
        assert len(subset) == 2 * len(splits[name])


def test_split_all_is_every_file_and_an_unknown_split_is_refused(tmp_path):
    """`--split all` means every file on every command (it once selected none when read as a
    split name, and tokenizing wrote 0 files without a word)."""
    path = tmp_path / "m.jsonl"
    entries = [ManifestEntry(f"{g}/{i}.wav", 1.0, 16000, g) for g in "abcdef" for i in range(2)]
    write_manifest(path, entries)
    split_manifest(path, valid=0.2, test=0.2)
    assert len(read_manifest(path, split="all")) == len(read_manifest(path)) == 12
    with pytest.raises(ManifestError, match=r"no split 'tset' .*'all' for every file"):
        read_manifest(path, split="tset")
    only_train = [ManifestEntry(e.path, 1.0, 16000, e.group, split="train") for e in entries]
    write_manifest(path, only_train)
    assert len(read_manifest(path, split="test")) == 0  # a standard split may be empty


def test_split_file_refuses_group_in_two_splits(tmp_path):
    with pytest.raises(ManifestError, match="both"):
        write_splits(tmp_path / "s.json", {"train": ["a"], "test": ["a"]})


def test_bad_manifest_line_is_located(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"path": "a.wav", "duration": 1}\n{"path": \n')
    with pytest.raises(ManifestError, match=":2: bad manifest line"):
        read_manifest(path)


@pytest.mark.parametrize("duration", ["-5", "0", "NaN", "Infinity"])
def test_a_manifest_line_with_a_bad_duration_is_refused_naming_the_line(tmp_path, duration):
    from segue.data.manifest import ManifestError, read_manifest

    path = tmp_path / "m.jsonl"
    path.write_text('{"path": "a.wav", "duration": 1.0, "group": "g"}\n'
                    f'{{"path": "b.wav", "duration": {duration}, "group": "g"}}\n')
    with pytest.raises(ManifestError, match=r"m.jsonl:2: bad manifest line .*duration must be"):
        read_manifest(path)
