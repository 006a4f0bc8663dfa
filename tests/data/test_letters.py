"""The letters selection set: what TTS voices are asked to say, which voices, the items, and a
whole build on a small fake Asterisk `en` package made here (nothing is downloaded)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from segue import audio as audio_io
from segue.data import letters
from segue.data import real_speech as rs
from segue.data.manifest import read_manifest, read_splits, splits_path_for
from segue.data.speech import SPEAKERS_BY_ID, speaker_splits
from segue.errors import InputError
from tests.data.fake_debs import (
    ASTERISK_COPYRIGHT,
    FakeApt,
    beep,
    build_deb,
    speechlike,
    write_copyright,
    write_g722,
)


@pytest.mark.parametrize(("written", "said"), [
    ("B", "bee"), ("a", "ay"), ("W", "double you"), ("0", "zero"), ("7", "seven"),
    ("13", "thirteen"), ("40", "forty"), ("21", "twenty one"), ("99", "ninety nine")])
def test_spoken_names_letters_and_numbers(written, said):
    assert letters.spoken(written) == said


@pytest.mark.parametrize("written", ["", "ab", "100", "-1", "é"])
def test_spoken_refuses_anything_else(written):
    with pytest.raises(InputError, match="not a letter or a number"):
        letters.spoken(written)


def test_tts_voices_are_held_out_valid_voices_of_every_engine():
    voices = letters.tts_voices(3)
    assert len(set(voices)) == 3
    assert {SPEAKERS_BY_ID[v].engine for v in voices} == {"espeak", "flite", "festival"}
    assert all(speaker_splits()[v] == "valid" for v in voices)
    assert letters.tts_voices(1) == voices[:1]  # a prefix: fixed order
    for bad in (0, 1000):
        with pytest.raises(InputError, match="tts_voices must be"):
            letters.tts_voices(bad)


def _asterisk_en(root, with_g722: bool = True):
    tree = root / letters.PACKAGE.name
    folder = tree / rs.ASTERISK_ROOT / "en_US_f_Allison"
    folder.mkdir(parents=True)
    write_copyright(tree, letters.PACKAGE.name, ASTERISK_COPYRIGHT)
    if with_g722:
        for prompt, audio in (("letters/b", speechlike(0.9, 1)), ("digits/7", speechlike(0.9, 2)),
                              ("vm-goodbye", speechlike(1.5, 3)), ("letters/x", beep())):
            write_g722(folder / f"{prompt}.g722", audio)
    else:
        for prompt in ("letters/b", "digits/7", "vm-goodbye"):
            (folder / f"{prompt}.g722").parent.mkdir(parents=True, exist_ok=True)
            (folder / f"{prompt}.g722").write_bytes(b"")
    return tree


def test_items_pair_the_real_voice_with_tts_voices_on_the_same_content(tmp_path):
    tree = _asterisk_en(tmp_path, with_g722=False)
    voices = letters.tts_voices(2)
    items = letters.letters_items(tree, voices)
    assert {i.split for i in items} == {"valid"}
    real = [i for i in items if i.meta["source"] != "tts"]
    assert sorted(i.meta["sentence_id"] for i in real) == ["en:7", "en:b"]  # not vm-goodbye
    assert {i.group for i in real} == {"asterisk-en_US_f_Allison"}
    tts = [i for i in items if i.meta["source"] == "tts"]
    assert len(tts) == 2 * len(voices) and {i.group for i in tts} == set(voices)
    said = {(i.group, i.meta["sentence_id"]): i.meta["text"] for i in tts}
    assert said[(voices[0], "en:b")] == "bee" and said[(voices[1], "en:7")] == "seven"
    assert len({i.uid for i in items}) == len(items)


@pytest.mark.skipif(any(shutil.which(p) is None for p in ("dpkg-deb", "ffmpeg", "espeak-ng",
                                                          "flite", "text2wave")),
                    reason="needs dpkg-deb, ffmpeg and the TTS engines")
def test_build_renders_both_sides_into_one_valid_split(tmp_path):
    tree = _asterisk_en(tmp_path / "trees")
    apt = FakeApt({letters.PACKAGE.name: build_deb(tree, letters.PACKAGE.name, tmp_path)})
    out = tmp_path / "letters"
    summary = letters.make_letters_corpus(out, tts_voices_count=1, workers=1,
                                          cache=tmp_path / "cache", download=apt)
    assert summary.skipped == {"tone": 1}  # the fake "x" is a beep: not speech
    manifest = read_manifest(out / "manifest.jsonl")
    voice = letters.tts_voices(1)[0]
    assert sorted((e.group, e.extra["sentence_id"]) for e in manifest) == sorted(
        [("asterisk-en_US_f_Allison", "en:7"), ("asterisk-en_US_f_Allison", "en:b"),
         (voice, "en:7"), (voice, "en:b"), (voice, "en:x")])
    assert {e.split for e in manifest} == {"valid"} and {e.sample_rate for e in manifest} == {16000}
    audio = audio_io.load(manifest.resolve(next(e for e in manifest if e.group == voice)))
    assert np.isfinite(audio).all() and audio.size > 8000
    assert set(read_splits(splits_path_for(out / "manifest.jsonl"))["valid"]) == set(
        manifest.groups)
    again = letters.make_letters_corpus(out, tts_voices_count=1, workers=1,
                                        cache=tmp_path / "cache", download=apt)
    assert again.resumed == again.files == summary.files and apt.calls == [letters.PACKAGE.name]


def test_a_package_without_prompts_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda program: "/usr/bin/" + program)
    monkeypatch.setattr(letters, "check_engines", lambda texts: None)
    tree = tmp_path / "trees" / letters.PACKAGE.name
    write_copyright(tree, letters.PACKAGE.name, ASTERISK_COPYRIGHT)
    (tree / rs.ASTERISK_ROOT).mkdir(parents=True)
    monkeypatch.setattr(letters, "fetch_package", lambda package, cache, download: tree)
    with pytest.raises(InputError, match="no letter or number prompt"):
        letters.make_letters_corpus(tmp_path / "out", cache=tmp_path / "cache")
