"""Build segue's probe sets: pairs (`lexical`, `syntax`) spoken by held-out voices, written in
the ZeroSpeech 2021 layout (`sets`) so that they are scored like the official ones.

    build_lexical("runs/probes", n_pairs=2000, seed=0)     # runs/probes/lexical/dev/
    build_syntactic("runs/probes", n_pairs=1050, seed=0)   # runs/probes/syntactic/dev/

Voices: the espeak-ng voices of the speech corpus that training never hears (its valid and test
speakers, `segue.data.speech.speaker_splits`), each with its corpus pitch and rate. Words and
non-words are said from phonemes (`[[...]]` input), so a non-word is said as made; the lexical
set uses the voices of `LEXICAL_ACCENTS` (each accent costs one pass of espeak-ng over the word
list, about 40 s, cached). Audio is trimmed to 0.15 s of silence each side and peak-normalised,
as the corpus's is (`segue.data.speech.render_speech`), and stored as 16 kHz 16-bit WAV.

A set is built in `<task>/.dev.partial/` and renamed to `<task>/dev/` when complete; its
`build.json` holds the settings, and a build with the same settings returns at once (cached).
An interrupted build resumes: the audio files already written are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from segue import audio as audio_io
from segue.config import cache_dir, write_atomic
from segue.data.speech import (
    ENGINE_TIMEOUT_S,
    SAMPLE_RATE,
    SPEAKERS,
    Speaker,
    speaker_splits,
    trim_silence,
)
from segue.errors import InputError, StateError
from segue.eval.probes.lexical import (
    WORDLIST,
    accent_of,
    corpus_word_counts,
    make_lexical_pairs,
    read_wordlist,
)
from segue.eval.probes.phonemes import espeak_version, require_espeak
from segue.eval.probes.sets import BUILD_NAME, BUILD_SPLIT, set_folder, write_gold
from segue.eval.probes.syntax import PHENOMENA, frequency_baseline, make_syntax_pairs

#: Bump when a change makes other sets from the same settings.
BUILD_VERSION = 1
LEXICAL_ACCENTS = ("en-us", "en")
LEXICAL_PAIRS, SYNTAX_PAIRS = 2000, 1050
#: Shorter than this after trimming: the engine said nothing usable.
MIN_SECONDS = 0.1


@dataclass
class BuildSummary:
    """What a build made (or found already made)."""

    task: str
    folder: str
    pairs: int
    items: int
    voices: int
    seconds: float
    cached: bool
    #: syntactic: share of pairs a unigram model of the texts gets right, per type and "all"
    #: (word frequency alone; a model should beat it to be credited with syntax)
    frequency_baseline: dict[str, float] = field(default_factory=dict)


def held_out_voices(accents: Sequence[str] | None = None) -> list[Speaker]:
    """The corpus's espeak-ng voices of its valid and test splits (never trained on), optionally
    only those of some accents ("en-us", "en", ...), in catalogue order."""
    splits = speaker_splits()
    voices = [
        s for s in SPEAKERS
        if s.engine == "espeak" and splits[s.id] != "train"
        and (accents is None or accent_of(s.voice) in accents)
    ]  # fmt: skip
    if not voices:
        raise InputError(f"no held-out espeak-ng voice of accents {list(accents or [])}")
    return voices


def speak(speaker: Speaker, text: str, path: Path) -> float:
    """Say `text` (words, or `[[phonemes]]`) in an espeak-ng voice into the WAV `path`: trimmed,
    peak-normalised, 16 kHz. Returns its seconds; raises StateError."""
    if speaker.engine != "espeak":
        raise StateError(f"{speaker.id}: the probes use espeak-ng voices only")
    with tempfile.TemporaryDirectory(prefix="segue-probe-") as folder:
        wav = Path(folder) / "out.wav"
        command = [require_espeak(), "-v", speaker.voice, "-s", str(round(speaker.rate)),
                   "-p", str(round(speaker.pitch or 50)), "-w", str(wav), text]  # fmt: skip
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=ENGINE_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise StateError(f"{speaker.id}: espeak-ng timed out on {text!r}") from None
        if result.returncode != 0 or not wav.is_file():
            raise StateError(f"{speaker.id}: espeak-ng failed on {text!r}: {result.stderr[-300:]}")
        audio = audio_io.load(wav, SAMPLE_RATE)
    if audio_io.is_silent(audio):
        raise StateError(f"{speaker.id}: espeak-ng said nothing for {text!r}")
    audio = trim_silence(audio, SAMPLE_RATE)
    if audio.size < MIN_SECONDS * SAMPLE_RATE:
        raise StateError(f"{speaker.id}: only {audio.size / SAMPLE_RATE:.2f} s for {text!r}")
    audio_io.save(path, audio_io.normalize_audio(audio, "peak"), SAMPLE_RATE)
    return audio.size / SAMPLE_RATE


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _wordlist_label() -> str:
    """The default word list in the settings: its file's digest (a new wamerican, a new set)."""
    try:
        return "wamerican " + hashlib.sha256(WORDLIST.read_bytes()).hexdigest()[:16]
    except OSError:
        return "wamerican (missing)"  # building will say how to install it


def _prepare(root: str | os.PathLike, task: str, settings: dict) -> tuple[Path, Path, bool]:
    """(final folder, partial folder, cached): refuses to replace a set segue did not build;
    keeps a partial build of the same settings."""
    final = set_folder(root, task, BUILD_SPLIT)
    partial = final.with_name(f".{final.name}.partial")
    built = final / BUILD_NAME
    if final.exists():
        if not built.is_file():
            raise FileExistsError(
                f"{final}: holds a set that segue did not build (the official ZeroSpeech one?); "
                "build segue's probes into another folder"
            )
        try:
            if json.loads(built.read_text()).get("settings") == settings:
                return final, partial, True
        except ValueError:
            pass  # damaged: rebuilt
    marker = partial / "settings.json"
    if partial.exists():
        try:
            same = json.loads(marker.read_text()) == settings
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    write_atomic(marker, json.dumps(settings, indent=1).encode())
    return final, partial, False


def _finish(final: Path, partial: Path, task: str, settings: dict, rows: list[dict],
            summary: BuildSummary) -> BuildSummary:  # fmt: skip
    """Write gold.csv and build.json, then swap the partial folder in."""
    write_gold(partial, task, rows)
    (partial / "settings.json").unlink(missing_ok=True)
    summary.folder = str(final)
    meta = {"settings": settings, "summary": asdict(summary)}
    write_atomic(partial / BUILD_NAME, (json.dumps(meta, indent=1) + "\n").encode())
    if final.exists():
        shutil.rmtree(final)  # an older build of other settings (checked in _prepare)
    partial.rename(final)
    return summary


def _cached(final: Path) -> BuildSummary:
    meta = json.loads((final / BUILD_NAME).read_text())
    return BuildSummary(**{**meta["summary"], "folder": str(final), "cached": True})


def _render(jobs: list[tuple[Speaker, str, Path]], desc: str, progress: bool) -> None:
    """Say every (voice, text, path) whose file is not there yet."""
    for speaker, text, path in tqdm(jobs, desc=desc, unit="file", disable=not progress):
        if not path.is_file():
            speak(speaker, text, path)


def build_lexical(
    root: str | os.PathLike,
    *,
    n_pairs: int = LEXICAL_PAIRS,
    seed: int = 0,
    min_count: int = 5,
    accents: Sequence[str] = LEXICAL_ACCENTS,
    counts: Mapping[str, int] | None = None,
    wordlist: Sequence[str] | None = None,
    progress: bool = True,
) -> BuildSummary:
    """The sWUGGY-style set in ROOT/lexical/dev (see the module docstring and `lexical`).

    counts: word counts of the texts (default: `corpus_word_counts()` of the speech corpus);
    wordlist: the real words (default: Debian's wamerican list). Given ones are part of the
    settings (by digest).
    """
    started = time.perf_counter()
    voices = held_out_voices(accents)
    settings = {
        "task": "lexical", "version": BUILD_VERSION, "n_pairs": n_pairs, "seed": seed,
        "min_count": min_count, "voices": [v.id for v in voices], "espeak": espeak_version(),
        "counts": "corpus texts, seed 0" if counts is None else _digest(sorted(counts.items())),
        "wordlist": _wordlist_label() if wordlist is None else _digest(list(wordlist)),
    }  # fmt: skip
    final, partial, cached = _prepare(root, "lexical", settings)
    if cached:
        return _cached(final)
    pairs = make_lexical_pairs(
        n_pairs,
        seed,
        counts=corpus_word_counts() if counts is None else counts,
        wordlist=read_wordlist() if wordlist is None else list(wordlist),
        voices=[(v.id, v.voice) for v in voices],
        min_count=min_count,
        cache=cache_dir() / "probes",
        progress=progress,
    )
    by_id = {v.id: v for v in voices}
    rows, jobs = [], []
    for pair in pairs:
        for name, said, correct, text in (
            (f"{pair.id}-word", pair.real, 1, pair.word),
            (f"{pair.id}-nonword", pair.fake, 0, pair.fake.espeak()),
        ):
            rows.append({"id": pair.id, "filename": name, "word": text, "phones": str(said),
                         "voice": pair.voice, "frequency": pair.frequency, "length": len(said),
                         "correct": correct})  # fmt: skip
            jobs.append((by_id[pair.voice], said.espeak(), partial / f"{name}.wav"))
    _render(jobs, "lexical audio", progress)
    summary = BuildSummary("lexical", "", len(pairs), len(rows), len({p.voice for p in pairs}),
                           round(time.perf_counter() - started, 1), False)  # fmt: skip
    return _finish(final, partial, "lexical", settings, rows, summary)


def build_syntactic(
    root: str | os.PathLike,
    *,
    n_pairs: int = SYNTAX_PAIRS,
    seed: int = 0,
    min_count: int = 1,
    phenomena: tuple[str, ...] = PHENOMENA,
    counts: Mapping[str, int] | None = None,
    progress: bool = True,
) -> BuildSummary:
    """The sBLIMP-style set in ROOT/syntactic/dev (see the module docstring and `syntax`):
    both sentences of a pair in one held-out voice, drawn per pair from all of them."""
    started = time.perf_counter()
    voices = held_out_voices()
    settings = {
        "task": "syntactic", "version": BUILD_VERSION, "n_pairs": n_pairs, "seed": seed,
        "min_count": min_count, "phenomena": list(phenomena), "voices": [v.id for v in voices],
        "espeak": espeak_version(),
        "counts": "corpus texts, seed 0" if counts is None else _digest(sorted(counts.items())),
    }  # fmt: skip
    final, partial, cached = _prepare(root, "syntactic", settings)
    if cached:
        return _cached(final)
    counts = corpus_word_counts() if counts is None else counts
    pairs = make_syntax_pairs(
        n_pairs, seed, counts=counts, min_count=min_count, phenomena=phenomena
    )
    rng = np.random.default_rng([seed, 0x5B])
    rows, jobs, used = [], [], set()
    for n, pair in enumerate(pairs):
        pair_id = f"syn{n:04d}"
        speaker = voices[int(rng.integers(len(voices)))]
        used.add(speaker.id)
        for name, correct, text in ((f"{pair_id}-good", 1, pair.good),
                                    (f"{pair_id}-bad", 0, pair.bad)):  # fmt: skip
            row = {"id": pair_id, "filename": name, "voice": speaker.id, "type": pair.type}
            rows.append({**row, "subtype": pair.subtype, "correct": correct, "transcription": text})
            jobs.append((speaker, text, partial / f"{name}.wav"))
    _render(jobs, "syntactic audio", progress)
    seconds = round(time.perf_counter() - started, 1)
    baseline = frequency_baseline(pairs, counts)
    summary = BuildSummary("syntactic", "", len(pairs), len(rows), len(used), seconds, False,
                           baseline)  # fmt: skip
    return _finish(final, partial, "syntactic", settings, rows, summary)
