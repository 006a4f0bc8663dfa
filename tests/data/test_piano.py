"""Piano corpus builder: catalogue, splits, item stream, rendering, tiny build."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest

pytest.importorskip("music21", reason="music21 is needed for the piano corpus (segue[data])")
pytest.importorskip("mido", reason="mido is needed for the piano corpus (segue[data])")

from segue import audio as audio_io
from segue.data import piano
from segue.data.corpus import take
from segue.data.manifest import read_manifest, read_splits
from segue.data.scores import ScoreLayout, corpus_root, scan_score

MISSING = piano.missing_tools()
needs_tools = pytest.mark.skipif(
    bool(MISSING), reason=f"piano rendering needs {', '.join(MISSING)} ({piano.INSTALL_HINT})"
)
CHORALE = "bach/bwv1.6.mxl"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Parsed pieces go to a per-session folder, not the shared temp cache."""
    monkeypatch.setenv("SEGUE_PIANO_CACHE", str(tmp_path_factory.getbasetemp() / "piano-cache"))


@pytest.fixture(scope="module")
def items():
    return take(piano.piano_items(0), 200)


def _estimated_seconds(item) -> float:
    layout = scan_score(corpus_root() / item.meta["source"])
    start, stop = item.meta["measures"]
    return (stop - start) * layout.seconds_per_measure / item.meta["tempo_factor"]


def test_catalogue_is_sorted_unique_and_polyphonic():
    catalogue = piano.piano_catalogue()
    ids = [p.piece_id for p in catalogue]
    assert len(ids) > 1000 and ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", i) for i in ids)
    composers = {p.composer for p in catalogue}
    assert {"bach", "beethoven", "mozart", "haydn", "palestrina", "monteverdi"} <= composers
    assert not composers & {"ryansMammoth", "essenFolksong", "oneills1850"}
    assert len({p.source.rsplit(".", 1)[0] for p in catalogue}) == len(catalogue)  # one format


def test_splits_are_by_piece():
    catalogue = piano.piano_catalogue()
    counts = {s: sum(p.split == s for p in catalogue) for s in ("train", "valid", "test")}
    assert counts["valid"] >= 2 and counts["test"] >= 2
    assert 0.05 < counts["valid"] / len(catalogue) < 0.15
    assert 0.05 < counts["test"] / len(catalogue) < 0.15
    assert all(p.split == piano.piece_split(p.piece_id) for p in catalogue)


def test_item_stream_is_deterministic(items):
    assert take(piano.piano_items(0), 200) == items
    assert take(piano.piano_items(1), 20) != items[:20]
    assert len({i.uid for i in items}) == len(items)


def test_items_respect_splits_and_vary(items):
    split_of: dict[str, str] = {}
    for item in items:
        assert split_of.setdefault(item.group, item.split) == item.split
        assert item.split == piano.piece_split(item.group)
        meta = item.meta
        assert {"composer", "source", "soundfont", "program", "transpose", "tempo_factor",
                "velocity_factor", "measures"} <= meta.keys()
        assert meta["program"] in (0, 1, 2) and abs(meta["transpose"]) <= 3
        assert meta["measures"][0] < meta["measures"][1]
        json.dumps(meta)
    first = items[:10]
    assert {"train", "valid", "test"} <= {i.split for i in first}
    assert len({i.meta["soundfont"] for i in items[:40]}) > 1
    assert len({i.meta["program"] for i in items[:40]}) > 1
    assert len({i.meta["composer"] for i in items[:40]}) >= 5


def test_small_corpus_holds_many_pieces(items):
    total, groups = 0.0, set()
    for item in items:
        if total >= 0.2 * 3600:
            break
        total += _estimated_seconds(item)
        groups.add(item.group)
    assert total >= 0.2 * 3600
    assert len(groups) >= 20


def test_plan_excerpts_cover_the_piece():
    long = ScoreLayout(measures=100, time_signature=(4, 4), qpm=120.0)  # 200 s
    ranges = piano.plan_excerpts(long, 20.0)
    assert ranges[0][0] == 0 and ranges[-1][1] == 100
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert all(15 <= (b - a) * long.seconds_per_measure <= 25 for a, b in ranges)
    short = ScoreLayout(measures=10, time_signature=(3, 4), qpm=None)
    assert piano.plan_excerpts(short, 20.0) == [(0, 10)]
    assert piano.plan_excerpts(ScoreLayout(0, (4, 4), None), 20.0) == []


def test_check_tools_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(piano.shutil, "which", lambda name: None)
    monkeypatch.setattr(piano, "find_soundfont", lambda name: None)
    with pytest.raises(RuntimeError, match=r"fluidsynth binary.*TimGM6mb.*apt-get install"):
        piano.check_tools()


@needs_tools
def test_render_one_item():
    piece = next(p for p in piano.piano_catalogue() if p.source == CHORALE)
    item = piano.make_item(piece, 0, 7, seed=0)
    audio = piano.render_piano(item)
    assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()
    seconds = audio.size / piano.SAMPLE_RATE
    assert 10.0 < seconds < 40.0  # 7 bars of 4/4 at 76 qpm is ~22 s before the tempo factor
    assert -35.0 < audio_io.rms_db(audio) < -6.0
    assert 0.5 < np.abs(audio).max() <= 1.0


@needs_tools
def test_tiny_build_and_resume(tmp_path):
    out = tmp_path / "piano"
    first = piano.make_piano_corpus(out, hours=0.01, workers=1)
    assert first.files >= 1 and first.failed == 0 and first.seconds >= 36.0
    manifest = read_manifest(out / "manifest.jsonl")
    for entry in manifest.entries:
        assert entry.path.endswith(".flac") and (out / entry.path).exists()
        assert entry.sample_rate == piano.SAMPLE_RATE and entry.extra["soundfont"]
    splits = read_splits(out / "manifest.splits.json")
    assert set(splits) == {"train", "valid", "test"}
    before = (out / "manifest.jsonl").read_text()
    second = piano.make_piano_corpus(out, hours=0.01, workers=1)
    assert second.resumed == second.files == first.files
    assert (out / "manifest.jsonl").read_text() == before
