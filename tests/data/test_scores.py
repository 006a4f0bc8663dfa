"""Reading scores: text scan against music21, note extraction, MIDI excerpts."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("music21", reason="music21 is needed to read scores (segue[data])")
mido = pytest.importorskip("mido", reason="mido is needed to read scores (segue[data])")

from segue.data import scores  # noqa: E402

CHORALE = "bach/bwv1.6.mxl"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Parsed pieces go to a per-session folder, not the shared temp cache."""
    monkeypatch.setenv("SEGUE_PIANO_CACHE", str(tmp_path_factory.getbasetemp() / "piano-cache"))


@pytest.mark.parametrize("source", [CHORALE, "palestrina/Agnus_00.krn",
                                    "monteverdi/madrigal.3.10.mxl"])  # the last is UTF-16
def test_scan_agrees_with_music21(source):
    layout = scores.scan_score(scores.corpus_root() / source)
    notes = scores.piece_notes(source)
    assert layout.measures == len(notes.measures) > 0
    assert layout.time_signature == notes.time_signature


def test_excerpt_midi_is_piano_transposed_and_scaled():
    notes = scores.piece_notes(CHORALE)
    plain = mido.MidiFile(file=io.BytesIO(scores.excerpt_midi(notes, (1, 5))))
    varied = mido.MidiFile(file=io.BytesIO(scores.excerpt_midi(
        notes, (1, 5), program=1, transpose=2, tempo_factor=1.25, velocity_factor=0.5)))
    messages = [m for m in varied.tracks[0] if not m.is_meta]
    assert {m.program for m in messages if m.type == "program_change"} == {1}
    assert 9 not in {m.channel for m in messages}
    pitches = [m.note for m in plain.tracks[0] if m.type == "note_on"]
    shifted = [m.note for m in messages if m.type == "note_on"]
    assert np.mean(shifted) == pytest.approx(np.mean(pitches) + 2)
    assert varied.length - scores.TAIL_SECONDS == pytest.approx(
        (plain.length - scores.TAIL_SECONDS) / 1.25, rel=0.02)
    with pytest.raises(scores.RenderError):
        scores.excerpt_midi(notes, (len(notes.measures), len(notes.measures) + 3))
