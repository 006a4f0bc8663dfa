"""Probe sets on disk, in the layout of the ZeroSpeech 2021 dataset, so that segue's own probes
and the official sWUGGY / sBLIMP dev sets are read and scored the same way:

    ROOT/lexical/dev/gold.csv      ROOT/lexical/dev/<filename>.wav ...
    ROOT/syntactic/dev/gold.csv    ROOT/syntactic/dev/<filename>.wav ...

gold.csv has a header; the columns read (others are ignored):

    lexical     filename, id, correct (1 word, 0 non-word), voice, word, phones, frequency, length
    syntactic   filename, id, correct (1 grammatical, 0 not), voice, type, subtype, transcription

`filename` is the audio's name without folder or extension (`.wav`, or `.flac` for sets a user
converted). A pair is a correct and an incorrect row of one id and voice (sBLIMP: and type and
subtype); within such a group they pair in file order, as the official evaluation pairs them.
The official scores average the pairs of an id (its voices), then the ids; so does `score.py`.
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from segue.config import write_atomic
from segue.errors import InputError

TASKS = ("lexical", "syntactic")
#: The split segue's own sets are written as (the official sets' gold files are for "dev").
BUILD_SPLIT = "dev"
GOLD_NAME = "gold.csv"
#: What segue writes beside gold.csv in the sets it builds (settings and summary).
BUILD_NAME = "build.json"
AUDIO_SUFFIXES = (".wav", ".flac")
REQUIRED = {"lexical": ("filename", "id", "correct"),
            "syntactic": ("filename", "id", "correct", "type")}  # fmt: skip
#: gold.csv columns written for segue's own sets (the official ones, in the same names).
COLUMNS = {
    "lexical": ("id", "filename", "word", "phones", "voice", "frequency", "length", "correct"),
    "syntactic": ("id", "filename", "voice", "type", "subtype", "correct", "transcription"),
}


@dataclass(frozen=True)
class ProbeItem:
    """One audio file of a set and its gold row."""

    filename: str
    path: Path
    id: str
    correct: bool
    voice: str = ""
    text: str = ""  # the word (lexical) or the sentence (syntactic)
    type: str = ""  # sBLIMP phenomenon
    subtype: str = ""
    frequency: int | None = None  # lexical: the word's count in the training texts
    length: int | None = None  # lexical: phonemes


@dataclass(frozen=True)
class ProbePair:
    """A correct item and its incorrect counterpart (indices into `ProbeSet.items`)."""

    id: str
    good: int
    bad: int


@dataclass
class ProbeSet:
    """The items and pairs of one task's folder."""

    task: str
    folder: Path
    items: list[ProbeItem]
    pairs: list[ProbePair]
    ids: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.ids = list(dict.fromkeys(p.id for p in self.pairs))

    def subset(self, n_ids: int | None, seed: int = 0) -> ProbeSet:
        """At most n_ids ids (all their pairs), drawn in a seeded order; None: all."""
        if n_ids is None or n_ids >= len(self.ids):
            return self
        order = np.random.default_rng(seed).permutation(len(self.ids))[:n_ids]
        keep = {self.ids[int(i)] for i in order}
        pairs = [p for p in self.pairs if p.id in keep]
        used = sorted({i for p in pairs for i in (p.good, p.bad)})
        where = {old: new for new, old in enumerate(used)}
        return replace(
            self,
            items=[self.items[i] for i in used],
            pairs=[ProbePair(p.id, where[p.good], where[p.bad]) for p in pairs],
        )


def set_folder(root: str | os.PathLike, task: str, split: str = BUILD_SPLIT) -> Path:
    """ROOT/<task>/<split>, the folder of one set in the ZeroSpeech 2021 layout."""
    if task not in TASKS:
        raise InputError(f"unknown probe task {task!r}; known: {list(TASKS)}")
    return Path(root) / task / split


def _int(value: str, what: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    try:
        return int(float(value))
    except ValueError:
        raise InputError(f"{what}: {value!r} is not a number") from None


def read_probe_set(folder: str | os.PathLike, task: str) -> ProbeSet:
    """Read a set folder (gold.csv + audio): its items and pairs. Raises FileNotFoundError for a
    missing folder, gold.csv or audio file, InputError for a malformed gold.csv."""
    if task not in TASKS:
        raise InputError(f"unknown probe task {task!r}; known: {list(TASKS)}")
    folder = Path(folder)
    gold = folder / GOLD_NAME
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: no {task} probe set there (a folder of audio files and {GOLD_NAME})"
        )
    if not gold.is_file():
        raise FileNotFoundError(
            f"{gold}: not found (a {task} set needs its gold file; the "
            "official test sets have none: score a dev set)"
        )
    with gold.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise InputError(f"{gold}: no rows")
    missing = [c for c in REQUIRED[task] if c not in rows[0]]
    if missing:
        raise InputError(f"{gold}: missing column(s) {missing} (has {sorted(rows[0])})")
    items = []
    seen: set[str] = set()
    for n, row in enumerate(rows, start=2):
        where = f"{gold} line {n}"
        name = (row["filename"] or "").strip()
        if not name or name in seen:
            raise InputError(f"{where}: {'empty' if not name else 'repeated'} filename {name!r}")
        seen.add(name)
        correct = _int(row["correct"] or "", f"{where} correct")
        if correct not in (0, 1):
            raise InputError(f"{where}: correct must be 1 or 0, got {row['correct']!r}")
        text = row.get("transcription") if task == "syntactic" else row.get("word")
        items.append(
            ProbeItem(
                filename=name,
                path=_audio_path(folder, name),
                id=str(row["id"]).strip(),
                correct=bool(correct),
                voice=(row.get("voice") or "").strip(),
                text=(text or "").strip(),
                type=(row.get("type") or "").strip(),
                subtype=(row.get("subtype") or "").strip(),
                frequency=_int(row.get("frequency") or "", f"{where} frequency"),
                length=_int(row.get("length") or "", f"{where} length"),
            )
        )
    return ProbeSet(task, folder, items, _pairs(items, task, gold))


def _audio_path(folder: Path, name: str) -> Path:
    for suffix in AUDIO_SUFFIXES:
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"{folder / name}.wav: not found (listed in {GOLD_NAME})")


def _pairs(items: list[ProbeItem], task: str, gold: Path) -> list[ProbePair]:
    groups: dict[tuple, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for i, item in enumerate(items):
        key = (
            (item.id, item.voice)
            if task == "lexical"
            else (item.id, item.voice, item.type, item.subtype)
        )
        groups[key][0 if item.correct else 1].append(i)
    pairs = []
    for key, (good, bad) in groups.items():
        if len(good) == len(bad):
            pairs.extend(ProbePair(key[0], g, b) for g, b in zip(good, bad))
        elif min(len(good), len(bad)) == 1 and good and bad:  # one word, several non-words
            pairs.extend(ProbePair(key[0], g, b) for g in good for b in bad)
        else:
            raise InputError(
                f"{gold}: id {key[0]!r} (voice {key[1]!r}) has {len(good)} correct and "
                f"{len(bad)} incorrect items; each correct item needs an incorrect one"
            )
    return pairs


def write_gold(folder: str | os.PathLike, task: str, rows: list[dict]) -> Path:
    """gold.csv of a set folder (the task's `COLUMNS`), written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS[task], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = Path(folder) / GOLD_NAME
    write_atomic(path, buffer.getvalue().encode())
    return path
