"""Synthetic piano corpus: excerpts of real scores from music21's corpus, rendered with FluidSynth.

Design
------
* **Catalogue.** `piano_catalogue()` lists the polyphonic works that music21 ships (Bach chorales
  and other Bach, Beethoven, Mozart and Haydn quartets, Palestrina masses, Monteverdi madrigals,
  trecento polyphony, Schumann, Chopin, Joplin, ...; the folk-tune collections are left out). It
  is built from `music21.corpus.getPaths()`, keeps one file per piece (MusicXML preferred over
  Humdrum when both exist) and is sorted, so it is the same on every machine with the same
  music21. Each piece gets a stable, filesystem-safe id (`beethoven__opus18no1__movement1`).
* **Splits.** A piece's split comes from a CRC of its id alone (about 10 % valid, 10 % test),
  so it never depends on the seed or on how many hours are built: a valid/test piece never
  appears in train, whatever corpus is built from the catalogue.
* **Items.** A piece is cut into contiguous ranges of whole measures of about 15-30 s each (the
  whole piece when it is short). The number of measures, first time signature and tempo come
  from `segue.data.scores.scan_score`, a cheap text scan of the score file, so the item stream
  never parses a score in the main process. Each item draws, from a seed-and-uid keyed RNG, a
  transposition (-3..+3 semitones), a tempo factor, a velocity factor, an acoustic piano GM
  program (0, 1 or 2) and a soundfont.
* **Order.** `piano_items` interleaves the splits (8 train : 1 valid : 1 test items) and, within
  a split, picks a composer at random with weight sqrt(#pieces) (composers with under 5 pieces
  share one bucket) and rotates through that composer's pieces, one excerpt per visit. A small
  corpus therefore holds many pieces, and valid/test pieces appear from the first ten items on.
* **Rendering.** `render_piano` (picklable, runs in the pool workers) gets the whole piece as
  notes from `segue.data.scores.piece_notes` (parsed once per machine, then cached), turns the
  measure range into a MIDI file with `excerpt_midi` (transposed, tempo and velocity rescaled,
  every part on the chosen piano program), renders it with the `fluidsynth` CLI (reverb/chorus
  off, 16 kHz, float WAV), trims leading/trailing silence and peak-normalises.

Tools: `pip install 'segue[data]'` (music21, mido) and
`apt-get install fluidsynth fluid-soundfont-gm timgm6mb-soundfont fluidr3mono-gm-soundfont`.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import random
import shutil
import subprocess
import tempfile
import zipfile
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segue import audio as audio_io
from segue.data.corpus import BuildSummary, CorpusItem, RenderError, build_corpus
from segue.data.scores import (
    ScoreLayout,
    corpus_root,
    excerpt_midi,
    piece_notes,
    scan_score,
    source_id,
)

SAMPLE_RATE = 16000

#: music21 corpus folders with polyphonic art music (folk collections, lead sheets, demos and
#: exercises are left out). The composer of a piece is its folder name.
COMPOSERS: tuple[str, ...] = (
    "bach", "beach", "beethoven", "chopin", "ciconia", "corelli", "cpebach", "handel", "haydn",
    "johnson_j_r", "joplin", "liliuokalani", "luca", "lusitano", "monteverdi", "mozart",
    "palestrina", "schoenberg", "schubert", "schumann_clara", "schumann_robert", "trecento",
    "verdi", "weber", "webern",
)
#: Score formats read, best first: when a piece exists in several formats the first one wins.
FORMATS: tuple[str, ...] = (".mxl", ".musicxml", ".xml", ".krn")

#: Soundfonts (file name, weight). All are required, so a corpus is the same on every machine.
SOUNDFONTS: tuple[tuple[str, float], ...] = (
    ("FluidR3_GM.sf2", 0.45),
    ("TimGM6mb.sf2", 0.30),
    ("FluidR3Mono_GM.sf3", 0.25),
)
SOUNDFONT_DIRS: tuple[str, ...] = (
    "/usr/share/sounds/sf2", "/usr/share/sounds/sf3", "/usr/share/soundfonts",
    "/usr/local/share/soundfonts", "~/.local/share/soundfonts",
)
#: General MIDI acoustic pianos (program, weight): grand, bright grand, electric grand.
PROGRAMS: tuple[tuple[int, float], ...] = ((0, 0.6), (1, 0.25), (2, 0.15))
TRANSPOSE = range(-3, 4)
TEMPO_RANGE = (0.85, 1.15)
VELOCITY_RANGE = (0.7, 1.15)

#: Excerpt length aimed at, drawn per piece in this range (seconds, at the score tempo).
EXCERPT_SECONDS = (15.0, 28.0)
#: A piece estimated shorter than this is rendered whole.
WHOLE_PIECE_SECONDS = 36.0
#: Hard cap on one rendered item (a fade-out ends anything longer).
MAX_SECONDS = 45.0
MIN_SECONDS = 1.0
FLUIDSYNTH_TIMEOUT = 120.0

MIN_BUCKET = 5  # composers with fewer pieces are scheduled together
SPLIT_PATTERN = ("train",) * 4 + ("valid",) + ("train",) * 4 + ("test",)
INSTALL_HINT = ("pip install 'segue[data]'  and  apt-get install fluidsynth fluid-soundfont-gm "
                "timgm6mb-soundfont fluidr3mono-gm-soundfont")


# ----------------------------------------------------------------------------------------------
# Tools


def find_soundfont(name: str) -> Path | None:
    """Path of soundfont `name` in $SEGUE_SOUNDFONT_DIR (os.pathsep-separated) or the usual
    system folders; None when absent."""
    extra = [d for d in os.environ.get("SEGUE_SOUNDFONT_DIR", "").split(os.pathsep) if d]
    for folder in (*extra, *SOUNDFONT_DIRS):
        path = Path(folder).expanduser() / name
        if path.is_file():
            return path
    return None


def missing_tools() -> list[str]:
    """What the piano builder needs and cannot find (empty when everything is there)."""
    missing = []
    for module in ("music21", "mido"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"Python package {module}")
    if shutil.which("fluidsynth") is None:
        missing.append("fluidsynth binary")
    missing += [f"soundfont {name}" for name, _ in SOUNDFONTS if find_soundfont(name) is None]
    return missing


def check_tools() -> None:
    """Raise RuntimeError naming every missing tool, with the install hint."""
    missing = missing_tools()
    if missing:
        raise RuntimeError(f"piano corpus: missing {', '.join(missing)}. Install: {INSTALL_HINT}")


# ----------------------------------------------------------------------------------------------
# Catalogue and splits


@dataclass(frozen=True)
class Piece:
    """A score in music21's corpus. `source` is relative to the corpus root."""

    piece_id: str
    composer: str
    source: str
    split: str


def piece_split(piece_id: str) -> str:
    """Split of a piece, from its id alone: ~10 % valid, ~10 % test, the rest train."""
    bucket = zlib.crc32(piece_id.encode()) % 100
    return "valid" if bucket < 10 else "test" if bucket < 20 else "train"


@functools.lru_cache(maxsize=1)
def piano_catalogue() -> tuple[Piece, ...]:
    """All pieces, sorted by id (one file per piece, best format first)."""
    from music21 import corpus

    root = corpus_root()
    best: dict[str, tuple[int, str]] = {}
    for path in corpus.getPaths():
        rel = Path(path).relative_to(root)
        if rel.parts[0] not in COMPOSERS or rel.suffix.lower() not in FORMATS:
            continue
        stem = rel.with_suffix("").as_posix()
        rank = FORMATS.index(rel.suffix.lower())
        if stem not in best or rank < best[stem][0]:
            best[stem] = (rank, rel.as_posix())
    pieces: dict[str, Piece] = {}
    for stem, (_, source) in sorted(best.items()):
        piece_id = source_id(stem)
        if piece_id in pieces:
            raise RuntimeError(f"piece id collision: {source} and {pieces[piece_id].source}")
        pieces[piece_id] = Piece(piece_id, stem.split("/")[0], source, piece_split(piece_id))
    return tuple(pieces[k] for k in sorted(pieces))


# ----------------------------------------------------------------------------------------------
# Item stream


def plan_excerpts(layout: ScoreLayout, target_seconds: float) -> list[tuple[int, int]]:
    """Contiguous measure ranges [start, stop) of about `target_seconds` covering the piece."""
    n = layout.measures
    if n <= 0:
        return []
    total = n * layout.seconds_per_measure
    if total <= WHOLE_PIECE_SECONDS:
        return [(0, n)]
    parts = min(n, max(2, round(total / target_seconds)))
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _weighted(rng: random.Random, choices: tuple[tuple[Any, float], ...]) -> Any:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def make_item(piece: Piece, start: int, stop: int, seed: int) -> CorpusItem:
    """The item for measures [start, stop) of `piece`, its rendering variation drawn from
    (seed, uid) only."""
    uid = f"{piece.piece_id}__m{start:04d}-{stop:04d}"
    rng = random.Random(f"segue-piano:{seed}:{uid}")
    meta = {
        "composer": piece.composer,
        "source": piece.source,
        "measures": [start, stop],
        "soundfont": _weighted(rng, SOUNDFONTS),
        "program": _weighted(rng, PROGRAMS),
        "transpose": rng.choice(TRANSPOSE),
        "tempo_factor": round(rng.uniform(*TEMPO_RANGE), 3),
        "velocity_factor": round(rng.uniform(*VELOCITY_RANGE), 3),
    }
    return CorpusItem(uid=uid, group=piece.piece_id, split=piece.split, meta=meta)


@functools.lru_cache(maxsize=1)
def _composer_sizes() -> dict[str, int]:
    sizes: dict[str, int] = {}
    for piece in piano_catalogue():
        sizes[piece.composer] = sizes.get(piece.composer, 0) + 1
    return sizes


class _SplitStream:
    """Excerpts of one split's pieces: weighted composer choice, round-robin over pieces.
    Composers with fewer than MIN_BUCKET pieces share one "various" bucket."""

    def __init__(self, pieces: list[Piece], seed: int, split: str):
        self.seed = seed
        self.rng = random.Random(f"segue-piano:{seed}:{split}")
        self.root = corpus_root()
        sizes = _composer_sizes()
        by_composer: dict[str, list[Piece]] = {}
        for piece in pieces:
            bucket = piece.composer if sizes[piece.composer] >= MIN_BUCKET else "various"
            by_composer.setdefault(bucket, []).append(piece)
        self.queues: dict[str, deque[Piece]] = {}
        self.weights: dict[str, float] = {}
        for composer in sorted(by_composer):
            group = by_composer[composer]
            self.rng.shuffle(group)
            self.queues[composer] = deque(group)
            self.weights[composer] = math.sqrt(len(group))
        self.pending: dict[str, list[tuple[int, int]]] = {}

    def _excerpts(self, piece: Piece) -> list[tuple[int, int]]:
        rng = random.Random(f"segue-piano:{self.seed}:{piece.piece_id}")
        target = rng.uniform(*EXCERPT_SECONDS)
        try:
            layout = scan_score(self.root / piece.source)
        except (OSError, ValueError, KeyError, StopIteration, zipfile.BadZipFile):
            return []
        excerpts = plan_excerpts(layout, target)
        rng.shuffle(excerpts)
        return excerpts

    def next(self) -> CorpusItem | None:
        while self.queues:
            composers = list(self.queues)
            composer = self.rng.choices(composers, [self.weights[c] for c in composers])[0]
            queue = self.queues[composer]
            piece = queue.popleft()
            excerpts = self.pending.get(piece.piece_id)
            if excerpts is None:
                excerpts = self.pending[piece.piece_id] = self._excerpts(piece)
            item = None
            if excerpts:
                start, stop = excerpts.pop()
                item = make_item(piece, start, stop, self.seed)
            if excerpts:
                queue.append(piece)
            else:
                del self.pending[piece.piece_id]
            if not queue:
                del self.queues[composer]
            if item is not None:
                return item
        return None


def piano_items(seed: int = 0) -> Iterator[CorpusItem]:
    """Deterministic stream of piano excerpts (see the module docstring); ends when every
    excerpt of every piece has been yielded (tens of hours)."""
    catalogue = piano_catalogue()
    streams = {s: _SplitStream([p for p in catalogue if p.split == s], seed, s)
               for s in ("train", "valid", "test")}
    alive = set(streams)
    index = 0
    while alive:
        split = SPLIT_PATTERN[index % len(SPLIT_PATTERN)]
        index += 1
        if split not in alive:
            continue
        item = streams[split].next()
        if item is None:
            alive.discard(split)
            continue
        yield item


# ----------------------------------------------------------------------------------------------
# Rendering (pool workers)


def _fluidsynth(midi_bytes: bytes, soundfont: Path) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="segue-piano-") as tmp:
        mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        mid.write_bytes(midi_bytes)
        cmd = ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-r", str(SAMPLE_RATE),
               "-O", "float", "-T", "wav", "-F", str(wav),
               # Load only the samples of the presets played: ~6x faster start with .sf3.
               "-o", "synth.dynamic-sample-loading=1", str(soundfont), str(mid)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=FLUIDSYNTH_TIMEOUT,
                                  check=False)
        except FileNotFoundError:
            raise RenderError(f"fluidsynth not found. Install: {INSTALL_HINT}") from None
        except subprocess.TimeoutExpired:
            raise RenderError(f"fluidsynth took over {FLUIDSYNTH_TIMEOUT:.0f} s") from None
        if proc.returncode != 0 or not wav.exists():
            tail = (proc.stderr or proc.stdout).strip()[-300:]
            raise RenderError(f"fluidsynth failed (exit {proc.returncode}): {tail}")
        return audio_io.load(wav, SAMPLE_RATE)


def trim_silence(audio: np.ndarray, threshold_db: float = -50.0) -> np.ndarray:
    """Cut leading silence and the release tail below `threshold_db` re. the peak (keeping
    50 ms before and 250 ms after), cap at MAX_SECONDS, and fade the end out."""
    magnitude = np.abs(audio)
    loud = np.flatnonzero(magnitude > magnitude.max() * 10 ** (threshold_db / 20))
    if loud.size == 0:
        return audio[:0]
    first = max(0, int(loud[0]) - SAMPLE_RATE // 20)
    last = min(audio.size, int(loud[-1]) + SAMPLE_RATE // 4)
    audio = audio[first:last].astype(np.float32, copy=True)
    fade = SAMPLE_RATE // 20
    if audio.size > MAX_SECONDS * SAMPLE_RATE:
        audio = audio[: int(MAX_SECONDS * SAMPLE_RATE)]
        fade = SAMPLE_RATE // 2
    fade = min(fade, audio.size)
    audio[audio.size - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return audio


def render_piano(item: CorpusItem) -> np.ndarray:
    """Render one piano item to 16 kHz mono float32, peak-normalised. Raises RenderError."""
    meta = item.meta
    soundfont = find_soundfont(meta["soundfont"])
    if soundfont is None:
        raise RenderError(f"soundfont {meta['soundfont']} not found. Install: {INSTALL_HINT}")
    try:
        piece = piece_notes(meta["source"])
    except RenderError:
        raise
    except Exception as error:  # music21 raises many types on odd scores
        raise RenderError(f"cannot parse {meta['source']}: {type(error).__name__}: {error}") \
            from error
    midi_bytes = excerpt_midi(
        piece, tuple(meta["measures"]), program=int(meta["program"]),
        transpose=int(meta["transpose"]), tempo_factor=float(meta["tempo_factor"]),
        velocity_factor=float(meta["velocity_factor"]), seed=zlib.crc32(item.uid.encode()),
    )
    audio = trim_silence(_fluidsynth(midi_bytes, soundfont))
    if audio.size < MIN_SECONDS * SAMPLE_RATE or audio_io.is_silent(audio, -70.0):
        raise RenderError(f"{item.uid}: rendered {audio.size / SAMPLE_RATE:.2f} s of near silence")
    return audio_io.normalize_audio(audio, "peak")


def make_piano_corpus(out_dir: str | os.PathLike, hours: float = 1.0, seed: int = 0,
                      workers: int | None = None) -> BuildSummary:
    """Build (or resume) a piano corpus of `hours` in `out_dir` (FLAC + manifest + splits)."""
    check_tools()
    return build_corpus(out_dir, piano_items(seed), render_piano, hours=hours,
                        sample_rate=SAMPLE_RATE, workers=workers, desc="piano")
