"""Reading scores from music21's corpus: a quick text scan, note lists and MIDI excerpts.

Design
------
* **Scan.** `scan_score` reads the number of measures of the first part, the first time
  signature and the first tempo mark of a MusicXML (.mxl, .musicxml, .xml; UTF-8 or UTF-16) or
  Humdrum (.krn) file with a cheap text scan, without music21, so a caller can plan excerpts
  without parsing a score. `ScoreLayout.seconds_per_measure` falls back on `default_qpm` when the
  score has no tempo mark.
* **Notes.** `piece_notes` turns a whole piece into a note list once (music21 parse -> MIDI ->
  mido; repeats are played straight, not expanded) with the start tick of every measure, and
  caches it in memory and on disk (see `cache_dir`; a file lock makes one process parse a piece
  while another that needs it waits, then reads the cache).
* **Excerpts.** `excerpt_midi` cuts a measure range, transposes (folding pitches into the piano
  range), rescales tempo and velocity, and writes a one-track MIDI file with every channel on
  one General MIDI piano program (the percussion channel is never used) and a release tail.
  A measure range with no notes, or outside the score, raises `RenderError`.

Nothing here knows about catalogues, splits or rendering: `segue.data.piano` builds on this.
Needs music21 and mido (`pip install 'segue[data]'`), imported where used; the scan needs neither.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import tempfile
import zipfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segue.data.corpus import RenderError

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock, workers may parse a piece twice
    fcntl = None  # type: ignore[assignment]

QPM_LIMITS = (36.0, 300.0)
TAIL_SECONDS = 1.5  # release time kept after the last note (a renderer trims it back)
_CACHE_VERSION = 2


# ----------------------------------------------------------------------------------------------
# Corpus files


def corpus_root() -> Path:
    """Root folder of music21's corpus (score paths here are relative to it)."""
    from music21 import common

    return Path(common.getCorpusFilePath())


def source_id(rel_path: str) -> str:
    """Filesystem-safe id of a corpus path: folders joined by "__", other odd characters "-"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", rel_path.replace("/", "__")).strip("-.")


# ----------------------------------------------------------------------------------------------
# Cheap score scan: measure count, first time signature, first tempo


@dataclass(frozen=True)
class ScoreLayout:
    """What `scan_score` reads from a score file."""

    measures: int
    time_signature: tuple[int, int]
    qpm: float | None  # first tempo mark, quarter notes per minute; None when there is none

    @property
    def seconds_per_measure(self) -> float:
        num, den = self.time_signature
        qpm = self.qpm or default_qpm(num, den)
        return max(num * 4.0 / den, 0.25) * 60.0 / qpm


def default_qpm(numerator: int, denominator: int) -> float:
    """Tempo used when a score has none: about 85 half notes/min in x/2 (Palestrina),
    92 quarters/min in x/4, 60 dotted quarters (or 150 eighths) per minute in x/8."""
    if denominator <= 2:
        return 170.0
    if denominator == 4:
        return 92.0
    if denominator == 8:
        return 90.0 if numerator % 3 == 0 and numerator > 3 else 75.0
    return 60.0


_XML_MEASURE = re.compile(rb"<measure[\s>]")
_XML_BEATS = re.compile(rb"<beats>\s*(\d+)\s*</beats>\s*<beat-type>\s*(\d+)")
_XML_TEMPO = re.compile(rb"<sound\b[^>]*\btempo=\"([0-9.]+)\"")
_KRN_METER = re.compile(r"^\*M(\d+)/(\d+)")
_KRN_TEMPO = re.compile(r"^\*MM([0-9.]+)")


def _read_musicxml(path: Path) -> bytes:
    """MusicXML text as UTF-8 bytes (some corpus files are UTF-16)."""
    text = path.read_bytes() if path.suffix.lower() != ".mxl" else _read_mxl(path)
    if text[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text = text.decode("utf-16").encode()
    return text


def _read_mxl(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        root = None
        if "META-INF/container.xml" in names:
            found = re.search(rb"full-path=\"([^\"]+)\"", archive.read("META-INF/container.xml"))
            root = found.group(1).decode() if found else None
        if root is None:
            root = next(n for n in names if n.endswith((".xml", ".musicxml"))
                        and not n.startswith("META-INF"))
        return archive.read(root)


def scan_score(path: str | os.PathLike) -> ScoreLayout:
    """Measure count of the first part, first time signature and tempo, by a text scan."""
    path = Path(path)
    meter: tuple[int, int] | None = None
    qpm: float | None = None
    if path.suffix.lower() == ".krn":
        measures, has_data = 0, False
        for line in path.read_text(errors="replace").splitlines():
            first = line.split("\t", 1)[0]
            if not first or first.startswith("!"):
                continue
            if first.startswith("*"):
                if meter is None and (m := _KRN_METER.match(first)):
                    meter = (int(m.group(1)), int(m.group(2)))
                if qpm is None and (m := _KRN_TEMPO.match(first)):
                    qpm = float(m.group(1))
            elif first.startswith("="):
                measures += has_data
                has_data = False
            else:
                has_data = True
        measures += has_data
    else:
        text = _read_musicxml(path)
        start = text.find(b"<part ")
        end = text.find(b"</part>", start)
        body = text[start:end] if start >= 0 and end > start else b""
        measures = len(_XML_MEASURE.findall(body))
        if m := _XML_BEATS.search(body):
            meter = (int(m.group(1)), int(m.group(2)))
        if m := _XML_TEMPO.search(text):
            qpm = float(m.group(1))
    if qpm is not None and not QPM_LIMITS[0] <= qpm <= QPM_LIMITS[1]:
        qpm = min(max(qpm, QPM_LIMITS[0]), QPM_LIMITS[1])
    if meter is None or meter[0] <= 0 or meter[1] <= 0:
        meter = (4, 4)
    return ScoreLayout(measures, meter, qpm)


# ----------------------------------------------------------------------------------------------
# Notes (music21) and MIDI excerpts


def cache_dir() -> Path:
    """Where parsed pieces are cached as note lists: $SEGUE_PIANO_CACHE, else a folder in the
    system temp dir (next to music21's own parse cache). Safe to delete at any time."""
    env = os.environ.get("SEGUE_PIANO_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / f"segue-piano-v{_CACHE_VERSION}"


@dataclass(frozen=True)
class PieceNotes:
    """A whole piece as notes, in MIDI ticks from the start of the score."""

    tpq: int
    notes: np.ndarray  # [N, 5] int64: onset, offset, pitch, velocity, part
    tempos: tuple[tuple[int, int], ...]  # (tick, microseconds per quarter); () = no tempo mark
    measures: tuple[int, ...]  # start tick of each measure of the first part
    time_signature: tuple[int, int]

    @property
    def end(self) -> int:
        return int(self.notes[:, 1].max()) if len(self.notes) else 0


def _extract_notes(source: str) -> dict[str, Any]:
    """Parse a corpus file with music21 and flatten it to notes via music21's MIDI writer."""
    import mido
    from music21 import converter, meter, midi, stream, tempo

    score = converter.parse(str(corpus_root() / source))
    if isinstance(score, stream.Opus):
        score = score.scores[0]
    parts = list(score.parts) or [score]
    offsets = [float(m.offset) for m in parts[0].getElementsByClass(stream.Measure)]
    explicit_tempo = score.recurse().getElementsByClass(tempo.MetronomeMark).first() is not None
    signature = score.recurse().getElementsByClass(meter.TimeSignature).first()
    # Flat parts: music21's MIDI writer would expand repeats of measured parts, which would
    # shift everything after a repeat away from the measure offsets above. Played straight.
    flat = stream.Score()
    for part in parts:
        flat.insert(0, part.flatten())
    mid = mido.MidiFile(file=io.BytesIO(midi.translate.streamToMidiFile(flat).writestr()))
    tpq = mid.ticks_per_beat
    notes: list[list[int]] = []
    tempos: list[tuple[int, int]] = []
    part = 0
    for track in mid.tracks:
        tick = 0
        sounding: dict[tuple[int, int], deque[tuple[int, int]]] = {}
        count = len(notes)
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempos.append((tick, msg.tempo))
            elif msg.type == "note_on" and msg.velocity > 0:
                sounding.setdefault((msg.channel, msg.note), deque()).append((tick, msg.velocity))
            elif msg.type in ("note_on", "note_off"):
                started = sounding.get((msg.channel, msg.note))
                if started:
                    onset, velocity = started.popleft()
                    if tick > onset:
                        notes.append([onset, tick, msg.note, velocity, part])
        part += len(notes) > count
    notes.sort()
    return {
        "tpq": tpq,
        "notes": notes,
        "tempos": sorted(tempos) if explicit_tempo else [],
        "measures": [round(o * tpq) for o in offsets] or [0],
        "time_signature": ([signature.numerator, signature.denominator] if signature is not None
                           else [4, 4]),
    }


def _read_cached(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=8)
def piece_notes(source: str) -> PieceNotes:
    """Notes of corpus file `source` (relative to music21's corpus root); parsed once per
    machine, then read back from `cache_dir()`."""
    from music21 import VERSION_STR

    path = cache_dir() / f"{source_id(source)}.m21-{VERSION_STR}.json"
    record = _read_cached(path)
    if record is None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = path.with_name(f".{path.name}.lock").open("a")
        except OSError:
            lock = None  # no usable cache folder: parse without caching
        try:
            if lock is not None and fcntl is not None:
                # One worker parses a piece; another wanting it waits, then reads the cache.
                fcntl.flock(lock, fcntl.LOCK_EX)
                record = _read_cached(path)
            if record is None:
                record = _extract_notes(source)
                if lock is not None:
                    try:
                        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                        tmp.write_text(json.dumps(record, separators=(",", ":")))
                        os.replace(tmp, path)
                    except OSError:
                        pass  # the cache is only an optimisation
        finally:
            if lock is not None:
                lock.close()  # releases the flock
    notes = np.asarray(record["notes"], dtype=np.int64).reshape(-1, 5)
    return PieceNotes(int(record["tpq"]), notes, tuple(map(tuple, record["tempos"])),
                      tuple(record["measures"]), tuple(record["time_signature"]))


_CHANNELS = tuple(c for c in range(16) if c != 9)  # channel 10 is percussion in GM


def excerpt_midi(piece: PieceNotes, measures: tuple[int, int], *, program: int = 0,
                 transpose: int = 0, tempo_factor: float = 1.0, velocity_factor: float = 1.0,
                 seed: int = 0) -> bytes:
    """Standard MIDI file of measures [start, stop) of `piece`, every part on piano `program`."""
    import mido

    start, stop = measures
    if not 0 <= start < len(piece.measures) or stop <= start:
        raise RenderError(f"measures {start}-{stop} outside the score ({len(piece.measures)})")
    t0 = piece.measures[start]
    t1 = piece.measures[stop] if stop < len(piece.measures) else piece.end
    notes = piece.notes[(piece.notes[:, 0] < t1) & (piece.notes[:, 1] > t0)].copy()
    notes[:, 0] = np.maximum(notes[:, 0], t0) - t0
    notes[:, 1] = np.minimum(notes[:, 1], t1) - t0
    notes = notes[notes[:, 1] - notes[:, 0] >= max(1, piece.tpq // 32)]
    if len(notes) == 0:
        raise RenderError(f"no notes in measures {start}-{stop}")

    pitch = notes[:, 2] + transpose
    pitch = np.where(pitch < 21, pitch + 12 * ((20 - pitch) // 12 + 1), pitch)
    pitch = np.where(pitch > 108, pitch - 12 * ((pitch - 109) // 12 + 1), pitch)
    jitter = np.random.default_rng(seed).integers(-6, 7, size=len(notes))
    velocity = np.clip(np.round(notes[:, 3] * velocity_factor) + jitter, 1, 127).astype(int)
    channel = np.asarray(_CHANNELS)[notes[:, 4] % len(_CHANNELS)]

    if piece.tempos:
        before = [us for tick, us in piece.tempos if tick <= t0]
        tempos = [(0, before[-1] if before else piece.tempos[0][1])]
        tempos += [(tick - t0, us) for tick, us in piece.tempos if t0 < tick < t1]
    else:
        tempos = [(0, round(60e6 / default_qpm(*piece.time_signature)))]
    events: list[tuple[int, int, Any]] = []
    for tick, us in tempos:
        qpm = min(max(60e6 / us * tempo_factor, QPM_LIMITS[0]), QPM_LIMITS[1])
        events.append((tick, 0, mido.MetaMessage("set_tempo", tempo=round(60e6 / qpm))))
    for ch in sorted(set(channel.tolist())):
        events.append((0, 1, mido.Message("program_change", channel=ch, program=program)))
    for (on, off), p, v, ch in zip(notes[:, :2].tolist(), pitch.tolist(), velocity.tolist(),
                                   channel.tolist(), strict=True):
        events.append((off, 2, mido.Message("note_off", channel=ch, note=p, velocity=0)))
        events.append((on, 3, mido.Message("note_on", channel=ch, note=p, velocity=v)))
    events.sort(key=lambda e: (e[0], e[1]))
    last_us = events[0][2].tempo
    for _, _, msg in events:
        if msg.type == "set_tempo":
            last_us = msg.tempo
    end = events[-1][0] + round(TAIL_SECONDS * 1e6 / last_us * piece.tpq)
    # A no-op controller at the end keeps the player running through the release tail.
    events.append((end, 4, mido.Message("control_change", channel=0, control=110, value=0)))

    track = mido.MidiTrack()
    now = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    out = io.BytesIO()
    mido.MidiFile(type=0, ticks_per_beat=piece.tpq, tracks=[track]).save(file=out)
    return out.getvalue()
