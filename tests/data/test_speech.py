"""The multi-speaker speech corpus: speaker catalogue, splits, text, item stream, rendering."""

import collections
import json
import re
import shutil

import numpy as np
import pytest

from segue.data import speech, speech_text
from segue.data.corpus import CorpusItem, take
from segue.data.manifest import read_manifest, read_splits, splits_path_for

HAVE_TEXTS = shutil.which("bible") is not None and all(
    (speech_text.FORTUNES_DIR / name).is_file() for name in speech_text.FORTUNE_FILES)
needs_texts = pytest.mark.skipif(not HAVE_TEXTS, reason="needs `bible` (apt package bible-kjv) "
                                 "and the fortune files (apt package fortunes)")
ENGINE_PROGRAMS = {"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave"}
SAFE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@pytest.fixture(scope="module")
def first_items() -> list[CorpusItem]:
    return take(speech.speech_items(0), 300)


def test_catalogue_has_many_distinct_filesystem_safe_voices():
    ids = [s.id for s in speech.SPEAKERS]
    assert len(ids) >= 100 and len(set(ids)) == len(ids)
    assert all(SAFE_ID.match(i) for i in ids), [i for i in ids if not SAFE_ID.match(i)]
    engines = collections.Counter(s.engine for s in speech.SPEAKERS)
    assert set(engines) == {"espeak", "flite", "festival"}
    # The espeak quirk: `en-gb+f3` would silently drop the variant.
    assert not any(s.voice.startswith("en-gb+") for s in speech.SPEAKERS)
    assert "espeak-en-us-f3-p35-s150" in speech.SPEAKERS_BY_ID  # ids are stable


def test_held_out_voices_are_fixed_and_spread_over_engines():
    splits = speech.speaker_splits()
    assert set(splits) == set(speech.SPEAKERS_BY_ID)
    counts = collections.Counter(splits.values())
    assert counts["valid"] >= 3 and counts["test"] >= 3
    assert counts["valid"] + counts["test"] <= 0.3 * len(splits)
    for engine in ENGINE_PROGRAMS:
        held = {splits[s.id] for s in speech.SPEAKERS if s.engine == engine}
        assert held == {"train", "valid", "test"}, engine


@pytest.mark.parametrize(("raw", "clean"), [
    ("Ge1:3 And God said, Let there be light: and there was light.",
     "And God said, Let there be light: and there was light."),
    ("and the king of Bela (the same is Zoar;) and they", "And the king of Bela, the same is "
     "Zoar; and they."),
    ("Yet now, if thou wilt forgive their sin--; and if not", "Yet now, if thou wilt forgive "
     "their sin; and if not."),
    ("HOLINESS TO THE LORD,", "Holiness To The Lord."),
    ("A 'full' life -- said \u201che\u201d   12 times!!", "A full life, said he times!"),
    ("to God-ward - that", "To God-ward that."),
    (" 42 ", ""),
])
def test_clean_text(raw, clean):
    assert speech_text.clean_text(raw) == clean


def test_chunking_respects_length_bounds_and_keeps_every_verse_label():
    rng = np.random.default_rng(0)
    verses = [(f"V{i}", "And it came to pass, that the man went out; and he said unto them, "
               f"Go ye {'far ' * (i % 7)}away.") for i in range(30)]
    verses.append(("V30", " ".join(["word"] * 80) + "."))  # one very long verse, no commas
    utterances = speech_text.chunk_utterances(verses, rng)
    low, high = speech_text.MIN_WORDS, speech_text.MAX_WORDS
    assert all(low <= len(t.split()) <= high for t, _ in utterances)
    labels = [int(label[1:]) for _, ls in utterances for label in ls]
    assert labels == sorted(labels) and set(labels) == set(range(31))  # in order, none lost
    spoken = sum(len(t.split()) for t, _ in utterances)
    assert spoken >= 0.9 * sum(len(t.split()) for _, t in verses)


@needs_texts
def test_text_pools_are_clean_bounded_and_disjoint():
    pools = speech_text.text_pools(0)
    assert len(pools["train"]) > 20000 and len(pools["valid"]) > 500 and len(pools["test"]) > 500
    texts = {split: {u.text for u in pool} for split, pool in pools.items()}
    assert not texts["train"] & texts["valid"] and not texts["train"] & texts["test"]
    assert not texts["valid"] & texts["test"]
    sample = [u for pool in pools.values() for u in pool[:2000]]
    assert {u.source for u in sample} == {"kjv", "fortunes"}
    for u in sample:
        assert speech_text.MIN_WORDS <= len(u.text.split()) <= speech_text.MAX_WORDS, u
        assert re.fullmatch(r"[A-Z][A-Za-z ,.;:?!'-]*[.?!]", u.text), u
        assert SAFE_ID.match(u.sentence_id), u


@needs_texts
def test_stream_is_deterministic(first_items):
    assert take(speech.speech_items(0), 300) == first_items
    other = take(speech.speech_items(1), 50)
    assert [i.meta["text"] for i in other] != [i.meta["text"] for i in first_items[:50]]


@needs_texts
def test_parallel_training_sentences(first_items):
    assert take(speech.speech_items(0, train_parallel=1), 300) == first_items  # the default
    items = take(speech.speech_items(0, train_parallel=3), 400)
    train = [i for i in items if i.split == "train"]
    train = [i for i in train if i.meta["sentence_id"] != train[-1].meta["sentence_id"]]  # whole
    voices = collections.defaultdict(set)
    for item in train:
        voices[item.meta["sentence_id"]].add(item.group)
    sizes = collections.Counter(len(v) for v in voices.values())
    assert set(sizes) <= {2, 3, 4} and sizes[3] > 10  # groups of 3 (a round's last: 2 or 4)
    assert all(i.meta["parallel_voices"] == len(voices[i.meta["sentence_id"]]) for i in train)
    assert len({i.uid for i in items}) == len(items)
    round_voices = {i.group for i in train[:100]}
    assert len(round_voices) == 100  # one round: every train voice once, in groups
    with pytest.raises(ValueError, match="train_parallel"):
        next(speech.speech_items(0, train_parallel=0))


@needs_texts
def test_stream_splits_speakers_and_parallel_sentences(first_items):
    splits = speech.speaker_splits()
    assert len({i.uid for i in first_items}) == len(first_items)
    for item in first_items:
        assert item.group in speech.SPEAKERS_BY_ID and item.split == splits[item.group]
        assert SAFE_ID.match(item.uid) and item.meta["text"]
        assert item.meta["engine"] == speech.SPEAKERS_BY_ID[item.group].engine
    head = first_items[:150]
    assert len({i.group for i in head}) >= 60
    per_split = collections.Counter(i.split for i in head)
    assert per_split["valid"] >= 6 and per_split["test"] >= 6 and per_split["train"] >= 100
    voices = collections.defaultdict(set)
    for item in head:
        if item.split != "train":
            voices[(item.split, item.meta["sentence_id"])].add(item.group)
    assert {s for s, _ in voices} == {"valid", "test"}
    assert all(len(v) >= 2 for v in voices.values()) and len(voices) >= 4
    held_out = {i.meta["sentence_id"] for i in first_items if i.split != "train"}
    assert not held_out & {i.meta["sentence_id"] for i in first_items if i.split == "train"}


def _one_speaker(engine: str, hts: bool = False) -> speech.Speaker:
    return next(s for s in speech.SPEAKERS if s.engine == engine
                and s.voice.endswith("_hts") == hts and s.warp != 1.0)


@pytest.mark.parametrize(("engine", "hts"), [("espeak", False), ("flite", False),
                                             ("festival", False), ("festival", True)])
def test_render_gives_trimmed_normalised_16k_speech(engine, hts):
    if shutil.which(ENGINE_PROGRAMS[engine]) is None:
        pytest.skip(f"{ENGINE_PROGRAMS[engine]} is not installed (apt package "
                    f"{'espeak-ng' if engine == 'espeak' else engine})")
    speaker = _one_speaker(engine, hts) if engine != "espeak" else speech.SPEAKERS[0]
    text = "And God called the light Day, and the darkness he called Night."
    audio = speech.render_speech(CorpusItem("u", speaker.id, "train", {"text": text}))
    assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()
    seconds = audio.size / speech.SAMPLE_RATE
    assert 2.0 < seconds < 8.0, seconds  # 12 words at 16 kHz
    assert abs(float(np.abs(audio).max()) - 0.95) < 0.01
    margin = int(speech.TRIM_MARGIN_S * speech.SAMPLE_RATE)
    assert np.abs(audio[: margin // 2]).max() < 0.05 and np.abs(audio[-margin // 2:]).max() < 0.05


def test_render_reports_engine_failures():
    with pytest.raises(speech.RenderError, match="unknown speaker"):
        speech.render_speech(CorpusItem("u", "nobody", "train", {"text": "Hello there."}))
    with pytest.raises(speech.RenderError, match="no text"):
        speech.render_speech(CorpusItem("u", speech.SPEAKERS[0].id, "train", {"text": " "}))


def test_check_engines_names_missing_programs(monkeypatch):
    real = shutil.which
    monkeypatch.setattr(speech.shutil, "which",
                        lambda name: None if name in ("flite", "bible") else real(name))
    with pytest.raises(RuntimeError, match=r"'flite'.*bible-kjv.*apt-get install.* flite"):
        speech.check_engines()


@needs_texts
@pytest.mark.skipif(any(shutil.which(p) is None for p in ENGINE_PROGRAMS.values()),
                    reason="needs espeak-ng, flite and festival (text2wave)")
def test_tiny_build_writes_flac_manifest_and_resumes(tmp_path):
    summary = speech.make_speech_corpus(tmp_path, hours=0.004, workers=2)
    assert summary.failed == 0 and summary.files >= 2 and summary.seconds >= 0.004 * 3600
    manifest = read_manifest(tmp_path / "manifest.jsonl")
    assert all(e.path.endswith(".flac") and manifest.resolve(e).is_file() for e in manifest)
    assert all(e.sample_rate == 16000 and e.extra["text"] and e.extra["sentence_id"]
               for e in manifest)
    splits = read_splits(splits_path_for(tmp_path / "manifest.jsonl"))
    assert sorted(g for gs in splits.values() for g in gs) == manifest.groups
    first = (tmp_path / "manifest.jsonl").read_text()
    again = speech.make_speech_corpus(tmp_path, hours=0.004, workers=1)
    assert again.resumed == again.files == summary.files
    assert (tmp_path / "manifest.jsonl").read_text() == first
    assert json.loads(first.splitlines()[0])["duration"] > 1.0
