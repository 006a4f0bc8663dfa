"""Checking a manifest's files before training: bad rows named by line, good files remembered by
modification time and size so an unchanged corpus is not reopened at every start."""

import json
import os

import pytest

from segue import audio as audio_io
from segue.data.manifest import (
    CHECKED_FILES,
    ManifestEntry,
    ManifestError,
    check_files,
    read_manifest,
    write_manifest,
)
from tests.conftest import tone, write


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGUE_CACHE_DIR", str(tmp_path / "cache"))
    entries = []
    for n in range(4):
        write(tmp_path / f"a{n}.wav", tone(0.5))
        entries.append(ManifestEntry(f"a{n}.wav", 0.5, 16000, "g", split="train"))
    write_manifest(tmp_path / "manifest.jsonl", entries)
    return tmp_path


def opened(monkeypatch) -> list[str]:
    """The files `audio_io.info` opens from now on."""
    calls: list[str] = []
    real = audio_io.info

    def counting(path, *args, **kwargs):
        calls.append(os.path.basename(str(path)))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(audio_io, "info", counting)
    return calls


def test_unchanged_files_are_not_opened_again(corpus, monkeypatch):
    manifest = read_manifest(corpus / "manifest.jsonl")
    calls = opened(monkeypatch)
    check_files(manifest)
    assert sorted(calls) == ["a0.wav", "a1.wav", "a2.wav", "a3.wav"]
    cached = json.loads((corpus / "cache" / CHECKED_FILES).read_text())
    assert len(cached) == 4 and all(len(stamp) == 2 for stamp in cached.values())
    calls.clear()
    check_files(manifest)
    assert calls == []  # nothing changed: nothing reopened
    # a file replaced by garbage (new size and time) is opened again, and caught
    (corpus / "a2.wav").write_bytes(b"not audio at all")
    with pytest.raises(ManifestError, match=r"manifest\.jsonl:3"):
        check_files(manifest)
    assert calls == ["a2.wav"]
    # a missing file is never taken from the cache
    os.remove(corpus / "a1.wav")
    kept, bad = check_files(manifest, skip_missing=True)
    assert [e.path for e in kept] == ["a0.wav", "a3.wav"] and len(bad) == 2


def test_an_unreadable_cache_means_checking_everything(corpus, monkeypatch):
    (corpus / "cache").mkdir()
    (corpus / "cache" / CHECKED_FILES).write_text("{broken")
    calls = opened(monkeypatch)
    check_files(read_manifest(corpus / "manifest.jsonl"))
    assert len(calls) == 4
    assert len(json.loads((corpus / "cache" / CHECKED_FILES).read_text())) == 4
