"""Lexicality: how much of what a recogniser hears in some audio is made of words.

    lexicon = Lexicon.load()                           # Debian's wamerican list (or any list)
    count = lexicon.count(transcriber.words(audio))    # a LexicalCount of Whisper's words
    count.dictionary_share, count.confident_share      # in the list; and heard with p >= 0.5
    babble(audio)                                      # [T] -> the same audio played backwards

A crude measure of whether a continuation says words. Whisper (English) transcribes it; two
shares of its words are kept: those in the dictionary (the measure the bundle issue asked for)
and those in the dictionary that Whisper is also confident of (its word probability at least
`MIN_PROBABILITY`). Whisper's language model turns anything speech-like into dictionary words,
so the first share is near 1.0 for babble as for real speech; the second separates them from
about 3 s of audio on. Measured on 12 espeak-ng sentences (4 voices) and the same audio played
backwards, Whisper tiny.en:

| clip | dictionary share, speech / backwards | confident share, speech / backwards |
| --- | --- | --- |
| 1.5 s | 1.00 / 1.00 | 0.42 / 0.42 |
| 3 s | 0.99 / 1.00 | 0.50 / 0.25 |
| 4 s | 0.96 / 0.42 | 0.52 / 0.09 |

Both are set against the same shares for real speech and for babble: here real speech played
backwards, which keeps the voice, loudness and phone-like spectra and has no words.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segue.errors import InputError
from segue.eval.asr import HeardWord, normalize_text

#: Where Debian's `wamerican` package puts its word list (scripts/setup.sh installs it).
DEFAULT_WORDS = Path("/usr/share/dict/american-english")
#: A word counts as confidently heard from this Whisper probability on.
MIN_PROBABILITY = 0.5


@dataclass(frozen=True)
class LexicalCount:
    """Words Whisper heard, how many are dictionary words, and how many of those it heard with
    probability >= MIN_PROBABILITY. Counts add up (`a + b`)."""

    words: int = 0
    dictionary: int = 0
    confident: int = 0

    def __add__(self, other: LexicalCount) -> LexicalCount:
        return LexicalCount(
            self.words + other.words,
            self.dictionary + other.dictionary,
            self.confident + other.confident,
        )

    @property
    def dictionary_share(self) -> float | None:
        """Share of the words found in the dictionary (None: no words)."""
        return self.dictionary / self.words if self.words else None

    @property
    def confident_share(self) -> float | None:
        """Share of the words that are dictionary words heard confidently (None: no words)."""
        return self.confident / self.words if self.words else None


@dataclass(frozen=True)
class Lexicon:
    """A set of normalised words (lowercase, apostrophes dropped: as `normalize_text` writes)."""

    words: frozenset[str]
    source: str = ""

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Lexicon:
        """A word list, one word per line (default: wamerican's); a clear error when missing."""
        path = Path(path) if path is not None else DEFAULT_WORDS
        if not path.is_file():
            hint = " (Debian/Ubuntu: apt install wamerican)" if path == DEFAULT_WORDS else ""
            raise InputError(f"no word list at {path}{hint}")
        text = path.read_text(encoding="utf-8", errors="replace")
        words = frozenset(w for line in text.splitlines() for w in normalize_text(line).split())
        if not words:
            raise InputError(f"the word list {path} has no words")
        return cls(words, str(path))

    def count(self, heard: Iterable[HeardWord]) -> LexicalCount:
        """Count heard words (a Whisper word such as "round-fark" counts as its two words)."""
        words = dictionary = confident = 0
        for word in heard:
            for part in normalize_text(word.text).split():
                known = part in self.words
                words += 1
                dictionary += known
                confident += known and word.probability >= MIN_PROBABILITY
        return LexicalCount(words, dictionary, confident)


def babble(audio: np.ndarray) -> np.ndarray:
    """[T] speech -> [T] babble: the same samples backwards (voice and spectra kept, no words)."""
    x = np.asarray(audio)
    if x.ndim != 1:
        raise InputError(f"babble takes one [T] signal, got shape {tuple(x.shape)}")
    return np.ascontiguousarray(x[::-1])
