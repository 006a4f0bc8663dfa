"""espeak-ng phonemes: words -> phonemes (`-x`), phonemes -> speech (`[[...]]` input), and
Wuggy-style non-words made from them.

    raw = phonemize(["hello.", "[[h@l'oU]]."], "en-us")   # ["h_@_l_'oU", "h_@_l_'oU"]
    word = Pronunciation.parse(raw[0])                     # phones ("h", "@", "l", "oU")
    stats = Phonotactics.from_lexicon(lexicon.values())
    nonwords = make_nonwords(word, stats, known, rng)      # same length and C/V shape, 1-2 changed

Phonemes are espeak-ng's mnemonics (`espeak-ng -x --sep=_`), one token per phoneme, a stress
mark (' primary, , secondary) in front of a stressed vowel. They depend on the voice's accent
(`en-us` flaps /t/ to `t#`, `en` keeps it), so every pronunciation here belongs to one accent.
A phoneme string fed back as `[[...]]` is what espeak-ng says; `-x` of that input shows how it
was read (`round_trip`), which is how a generated non-word is checked to be said as intended.

Non-words follow Wuggy (Keuleers & Brysbaert 2010) in small: one phoneme (words of up to 4) or
two (longer words) are replaced by phonemes of the same class (vowel by vowel, keeping the stress;
consonant by consonant), so length, syllable structure and stress pattern stay; every phoneme
trigram of the result (word edges included) must occur in the lexicon of that accent, so the
string is phonotactically plausible; among the legal replacements the ones whose transition
(bigram) frequencies are closest to the original's are preferred; and the result must not be
the phonemes of any word of the lexicon.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from segue.config import write_atomic
from segue.errors import InputError, StateError

ESPEAK = "espeak-ng"
ESPEAK_TIMEOUT_S = 600.0
#: espeak-ng's English vowel mnemonics start with one of these (consonants never do).
VOWEL_INITIALS = frozenset("aeiouAEIOUV03@")
#: Word edge in phonotactic n-grams.
EDGE = "#"
STRESS_MARKS = ("'", ",")


def require_espeak() -> str:
    """The espeak-ng program, or StateError saying how to install it."""
    path = shutil.which(ESPEAK)
    if path is None:
        raise StateError(
            "the probes are spoken by espeak-ng, which is not installed: "
            "sudo apt-get install -y espeak-ng"
        )
    return path


@lru_cache(maxsize=1)
def espeak_version() -> str:
    """espeak-ng's version ("eSpeak NG text-to-speech: 1.51"; pronunciations and audio depend
    on it), without the data folder `--version` also names."""
    result = subprocess.run(
        [require_espeak(), "--version"], capture_output=True, text=True, check=False
    )
    lines = result.stdout.strip().splitlines()
    return lines[0].split("  Data at:")[0].strip() if lines else "?"


def is_vowel(phone: str) -> bool:
    """A vowel (syllable nucleus, `@L` and `3` included) in espeak-ng's English mnemonics."""
    return bool(phone) and phone[0] in VOWEL_INITIALS


@dataclass(frozen=True)
class Pronunciation:
    """One word's phonemes: phones [n] and the stress mark ("", "'" or ",") of each."""

    phones: tuple[str, ...]
    stress: tuple[str, ...]

    @classmethod
    def parse(cls, raw: str) -> Pronunciation | None:
        """espeak-ng's `-x --sep=_` output of one word ("h_@_l_'oU") -> a Pronunciation; None for
        what is not one plain word (several words, pauses, glide marks, glottal stops)."""
        raw = raw.strip()
        if not raw or " " in raw:
            return None
        phones, stress = [], []
        for token in raw.split("_"):
            mark = ""
            while token[:1] in STRESS_MARKS:
                mark, token = token[0], token[1:]
            if not token or not (token[0].isalpha() or token[0] in VOWEL_INITIALS):
                return None  # ";" (hiatus), "?" (glottal stop), "||" (pause), ...
            if mark and not is_vowel(token):
                return None
            phones.append(token)
            stress.append(mark)
        return cls(tuple(phones), tuple(stress))

    @property
    def key(self) -> str:
        """The phones without stress, space-separated: what "the same word" compares."""
        return " ".join(self.phones)

    @property
    def shape(self) -> tuple[bool, ...]:
        """Vowel (True) or consonant of each phone: the syllable structure."""
        return tuple(is_vowel(p) for p in self.phones)

    def espeak(self) -> str:
        """The phoneme input that makes espeak-ng say it: `[[h@l'oU]]`."""
        return "[[" + "".join(s + p for s, p in zip(self.stress, self.phones)) + "]]"

    def replace(self, index: int, phone: str) -> Pronunciation:
        phones = list(self.phones)
        phones[index] = phone
        return Pronunciation(tuple(phones), self.stress)

    def __len__(self) -> int:
        return len(self.phones)

    def __str__(self) -> str:
        return " ".join(s + p for s, p in zip(self.stress, self.phones))


def phonemize(lines: Sequence[str], accent: str) -> list[str]:
    """espeak-ng `-x` phonemes (`_`-separated, words split by spaces) of each line, in one run.

    A line is text ("hello.") or phoneme input ("[[h@l'oU]]."); each is one clause, so one output
    line. Raises StateError when espeak-ng fails or does not answer one line per line.
    """
    if not lines:
        return []
    if any("\n" in line for line in lines):
        raise InputError("a line to phonemize contains a newline")
    with tempfile.TemporaryDirectory(prefix="segue-phonemes-") as folder:
        text = Path(folder) / "lines.txt"
        text.write_text("\n".join(lines) + "\n")
        command = [require_espeak(), "-v", accent, "-q", "-x", "--sep=_", "-f", str(text)]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=ESPEAK_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise StateError(f"espeak-ng -x timed out on {len(lines)} lines") from None
    if result.returncode != 0:
        raise StateError(f"espeak-ng -v {accent} -x failed: {result.stderr.strip()[-300:]}")
    out = [line.strip() for line in result.stdout.splitlines()]
    if len(out) != len(lines):
        raise StateError(
            f"espeak-ng -v {accent} -x gave {len(out)} lines for {len(lines)} (an input line "
            "that is not one clause?)"
        )
    return out


def pronounce(words: Sequence[str], accent: str) -> list[Pronunciation | None]:
    """The pronunciation of each word in `accent` (None where it is not one plain word)."""
    return [Pronunciation.parse(raw) for raw in phonemize([f"{w}." for w in words], accent)]


def round_trip(pronunciations: Sequence[Pronunciation], accent: str) -> list[Pronunciation | None]:
    """How espeak-ng reads each pronunciation given as `[[...]]` phoneme input: the phonemes it
    will say (a phoneme may be changed by the accent's rules, or two may merge into one)."""
    raw = phonemize([f"{p.espeak()}." for p in pronunciations], accent)
    return [Pronunciation.parse(r) for r in raw]


def lexicon_pronunciations(
    words: Sequence[str], accent: str, cache: Path | None = None
) -> dict[str, Pronunciation]:
    """{word: pronunciation} in `accent` for every word that is one plain word; espeak-ng's
    answer is cached in `cache` (a folder) under a name made from the words, accent and version
    (64k words take about 40 s)."""
    words = list(words)
    path = None
    if cache is not None:
        digest = hashlib.sha256("\n".join([espeak_version(), accent, *words]).encode()).hexdigest()[
            :16
        ]
        path = Path(cache) / f"phonemes-{accent}-{digest}.json"
        if path.is_file():
            try:
                raw = json.loads(path.read_text())
            except ValueError:
                raw = None  # a damaged cache file: made anew
            if isinstance(raw, list) and len(raw) == len(words):
                return _parsed(words, raw)
    raw = phonemize([f"{w}." for w in words], accent)
    if path is not None:
        write_atomic(path, json.dumps(raw).encode())
    return _parsed(words, raw)


def _parsed(words: Sequence[str], raw: Sequence[str]) -> dict[str, Pronunciation]:
    out = {}
    for word, text in zip(words, raw):
        parsed = Pronunciation.parse(text)
        if parsed is not None:
            out[word] = parsed
    return out


# ------------------------------------------------------------------------------ phonotactics


def _padded(phones: Sequence[str]) -> list[str]:
    return [EDGE, *phones, EDGE]


@dataclass
class Phonotactics:
    """Phone, bigram and trigram counts of a lexicon's pronunciations (word edges as `#`)."""

    phones: Counter
    bigrams: Counter
    trigrams: Counter

    @classmethod
    def from_lexicon(cls, pronunciations: Iterable[Pronunciation]) -> Phonotactics:
        phones, bigrams, trigrams = Counter(), Counter(), Counter()
        for p in pronunciations:
            seq = _padded(p.phones)
            phones.update(p.phones)
            bigrams.update(itertools.pairwise(seq))
            trigrams.update(zip(seq, seq[1:], seq[2:]))
        if not phones:
            raise InputError("no pronunciations to learn the phonotactics from")
        return cls(phones, bigrams, trigrams)

    def inventory(self, vowel: bool, min_count: int) -> list[str]:
        """The vowels (or consonants) seen at least `min_count` times, most frequent first."""
        return [p for p, c in self.phones.most_common() if c >= min_count and is_vowel(p) == vowel]

    def plausible(self, phones: Sequence[str], min_trigram: int, around: int | None = None) -> bool:
        """Every trigram (or only those touching position `around`) seen >= min_trigram times."""
        seq = _padded(phones)
        starts = range(len(seq) - 2) if around is None else range(around - 1, around + 2)
        for s in starts:
            if 0 <= s <= len(seq) - 3 and self.trigrams[tuple(seq[s : s + 3])] < min_trigram:
                return False
        return True

    def transition_distance(self, phones: Sequence[str], index: int, phone: str) -> float:
        """How far the bigram (transition) frequencies into and out of position `index` move
        when its phone becomes `phone`: sum of |log counts| differences (Wuggy's criterion)."""
        seq = _padded(phones)
        before, old, after = seq[index : index + 3]
        into = math.log1p(self.bigrams[(before, old)]) - math.log1p(self.bigrams[(before, phone)])
        out = math.log1p(self.bigrams[(old, after)]) - math.log1p(self.bigrams[(phone, after)])
        return abs(into) + abs(out)


@dataclass(frozen=True)
class NonwordRules:
    """How non-words are made: phonemes changed (1 up to `short` phonemes, else 2), the least
    count of every trigram, of a replacement phone, and the closest replacements to pick from."""

    short: int = 4
    min_trigram: int = 2
    min_phone: int = 20
    choices: int = 3
    attempts: int = 12


def changes_for(length: int, rules: NonwordRules) -> int:
    """Phonemes to change in a word of `length` phonemes."""
    return 1 if length <= rules.short else 2


def make_nonwords(
    word: Pronunciation,
    stats: Phonotactics,
    known: set[str],
    rng: np.random.Generator,
    *,
    n: int = 3,
    rules: NonwordRules | None = None,
) -> list[Pronunciation]:
    """Up to `n` distinct non-words for `word` (see the module docstring), best first.

    known: the `key`s of every word of the lexicon (a non-word must be none of them).
    """
    rules = rules or NonwordRules()
    changes = changes_for(len(word), rules)
    if len(word) < changes + 1:
        return []
    inventories = {v: stats.inventory(v, rules.min_phone) for v in (True, False)}
    found: dict[str, Pronunciation] = {}
    for _ in range(rules.attempts):
        candidate = word
        changed: set[int] = set()
        for _ in range(changes):
            step = _change_one(candidate, changed, stats, inventories, rng, rules)
            if step is None:
                break
            candidate, index = step
            changed.add(index)
        if len(changed) != changes or not stats.plausible(candidate.phones, rules.min_trigram):
            continue
        if candidate.key in known or candidate.key in found:
            continue
        found[candidate.key] = candidate
        if len(found) >= n:
            break
    return list(found.values())


def _change_one(
    word: Pronunciation,
    changed: set[int],
    stats: Phonotactics,
    inventories: dict[bool, list[str]],
    rng: np.random.Generator,
    rules: NonwordRules,
) -> tuple[Pronunciation, int] | None:
    """Replace one phone not yet changed: a random position with a legal replacement, the
    replacement drawn from the `choices` closest in transition frequency."""
    for index in rng.permutation(len(word)):
        index = int(index)
        if index in changed:
            continue
        original = word.phones[index]
        legal = []
        for phone in inventories[is_vowel(original)]:
            if phone == original:
                continue
            phones = list(word.phones)
            phones[index] = phone
            if stats.plausible(phones, rules.min_trigram, around=index):
                legal.append((stats.transition_distance(word.phones, index, phone), phone))
        if legal:
            legal.sort()
            _, phone = legal[int(rng.integers(min(rules.choices, len(legal))))]
            return word.replace(index, phone), index
    return None
