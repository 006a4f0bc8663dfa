import json
import os

import pytest

from segue.cli import main
from segue.data.index import group_function, index_directory
from segue.data.manifest import read_manifest, splits_path_for
from tests.conftest import tone, write


def test_index_skips_bad_files_and_keeps_good(audio_dir, tmp_path):
    out = tmp_path / "m.jsonl"
    summary = index_directory(audio_dir, out, group="top", workers=1)
    manifest = read_manifest(out)
    names = sorted(os.path.basename(e.path) for e in manifest)
    assert names == ["a.wav", "b.flac", "c.ogg", "d.wav", "e.flac"]
    skipped = dict(summary.skipped)
    assert set(skipped) == {"spk3/ch1/empty.wav", "spk3/ch1/notes.wav", "spk2/ch9/truncated.wav",
                            "spk2/ch9/nan.wav"}
    assert "empty" in skipped["spk3/ch1/empty.wav"]
    assert "truncated" in skipped["spk2/ch9/truncated.wav"]
    assert summary.ignored == ["spk3/ch1/readme.txt"]
    by_name = {os.path.basename(e.path): e for e in manifest}
    assert by_name["b.flac"].sample_rate == 22050 and by_name["b.flac"].extra["channels"] == 2
    assert by_name["e.flac"].duration == 2.0 and by_name["e.flac"].group == "spk3"
    # Paths are relative to the manifest's folder and resolve to the files.
    assert all(manifest.resolve(e).is_file() for e in manifest)
    assert "skipped 4 unreadable" in summary.report()


def test_reindex_only_opens_new_or_changed_files(audio_dir, tmp_path, monkeypatch):
    out = tmp_path / "m.jsonl"
    index_directory(audio_dir, out, workers=1)
    write(audio_dir / "spk4/ch1/new.wav", tone(0.4))
    opened = []
    import segue.data.index as index_module

    real = index_module.probe
    monkeypatch.setattr(index_module, "probe", lambda p, v=False: opened.append(p) or real(p, v))
    summary = index_directory(audio_dir, out, workers=1)
    assert [os.path.basename(p) for p in opened] == ["new.wav"]
    assert (summary.indexed, summary.new, summary.reused) == (6, 1, 5)
    assert len(summary.skipped) == 4  # bad files stay reported without being reopened


def test_parallel_index_equals_serial(audio_dir, tmp_path):
    for i in range(12):
        write(audio_dir / f"spk5/ch1/{i}.wav", tone(0.1 + 0.01 * i))
    index_directory(audio_dir, tmp_path / "serial.jsonl", workers=1)
    index_directory(audio_dir, tmp_path / "parallel.jsonl", workers=2)
    serial = (tmp_path / "serial.jsonl").read_text()
    assert serial == (tmp_path / "parallel.jsonl").read_text()


@pytest.mark.parametrize(
    "pattern, path, group",
    [
        ("parent", "spk/ch/utt.flac", "ch"),
        ("top", "spk/ch/utt.flac", "spk"),
        ("librispeech", "103/1240/103-1240-0000.flac", "103"),
        ("file", "a/b.wav", "a/b"),
        (r"(?P<group>\d+)-", "x/19-198-0001.flac", "19"),
        (r"^nomatch(?P<group>x)", "dir/u.wav", "dir"),  # no match falls back to the folder
        ("parent", "u.wav", "."),
    ],
)
def test_group_patterns(pattern, path, group):
    assert group_function(pattern)(path) == group


def test_group_pattern_needs_named_group():
    with pytest.raises(ValueError, match="named group"):
        group_function(r"(\w+)/")


def test_cli_index_exits_zero_and_reports(audio_dir, tmp_path, capsys):
    out = tmp_path / "m.jsonl"
    assert main(["data", "index", str(audio_dir), "--out", str(out), "--group", "top",
                 "--workers", "1", "--valid", "0.34", "--test", "0.34"]) == 0
    printed = capsys.readouterr().out
    assert "5 files" in printed and "skipped 4 unreadable" in printed and "truncated" in printed
    splits = json.loads(splits_path_for(out).read_text())
    assert sorted(g for groups in splits.values() for g in groups) == ["spk1", "spk2", "spk3"]
    assert all(len(groups) == 1 for groups in splits.values())
    assert main(["data", "stats", str(out)]) == 0
    assert "train" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "index", str(tmp_path / "nope"), "--out", str(tmp_path / "m.jsonl")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["data", "stats", str(tmp_path / "missing.jsonl")]) == 2
    assert "manifest not found" in capsys.readouterr().err


def test_a_broken_link_is_skipped_and_listed_not_fatal(audio_dir, tmp_path):
    link = audio_dir / "spk1" / "ch1" / "gone.wav"
    link.symlink_to(tmp_path / "nowhere.wav")
    summary = index_directory(audio_dir, tmp_path / "m.jsonl", group="top", workers=1)
    assert summary.indexed == 5
    assert ("spk1/ch1/gone.wav", "broken symbolic link") in summary.skipped


def test_bad_split_shares_and_patterns_fail_before_the_scan(audio_dir, tmp_path, capsys):
    out = tmp_path / "m.jsonl"
    assert main(["data", "index", str(audio_dir), "--out", str(out), "--valid", "2"]) == 2
    assert "split fractions must be in [0, 1)" in capsys.readouterr().err
    assert not out.exists()  # refused before writing anything
    assert main(["data", "index", str(audio_dir), "--out", str(out), "--group", "(?P<g"]) == 2
    assert "not a valid regex" in capsys.readouterr().err
    assert not out.exists()
