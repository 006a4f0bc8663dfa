"""The texts the speech corpus speaks: the King James Bible and a set of `fortunes` files,
cleaned for TTS and cut into utterances (see `segue.data.speech`'s "Text" design note).

`text_pools(seed)` gives the shuffled, deduplicated utterances of "train", "valid" and "test"
(disjoint texts); `clean_text` and `chunk_utterances` are its steps.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

#: Words per utterance (about 3-15 s of speech at the catalogue's rates).
MIN_WORDS, MAX_WORDS = 8, 32
#: Share of the (deduplicated) utterances kept for evaluation; never used for training.
EVAL_FRACTION = 0.08
FORTUNES_DIR = Path("/usr/share/games/fortunes")
#: Fortune files of plain prose and aphorisms (no ascii art, code, jokes in dialect, ...).
FORTUNE_FILES = (
    "education", "food", "fortunes", "humorists", "kids", "literature", "love", "medicine",
    "people", "pets", "platitudes", "science", "sports", "wisdom", "work",
)
BIBLE_COMMAND = ("bible", "-f", "gen1:1-rev22:21")
BIBLE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Utterance:
    """One sentence to speak: a stable id, the cleaned text, where it comes from."""

    sentence_id: str
    text: str
    source: str  # "kjv" or "fortunes"
    ref: str  # "Ge1:3-5" or "wisdom#12"


_VERSE_REF = re.compile(r"^\s*\d?[A-Za-z]+\d+:\d+\s+")
_QUOTES = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "—": "--", "–": "--",
                         "`": "'", "\t": " "})
_PUNCT_RANK = {",": 0, ":": 1, ";": 1, ".": 2, "!": 2, "?": 3}


def _strongest(match: re.Match) -> str:
    marks = match.group(0).replace(" ", "")
    return max(marks, key=lambda c: (_PUNCT_RANK[c], marks.index(c)))


_CLEANUPS: tuple[tuple[re.Pattern, object], ...] = tuple((re.compile(p), r) for p, r in (
    (r"[^\S\n]*(?:-{2,}|[()\[\]])[^\S\n]*", ", "),  # dashes and asides -> pauses
    (r"\b[A-Z]{2,}\b", lambda m: m.group(0).capitalize()),  # LORD -> Lord
    (r"[^A-Za-z\s.,;:?!'\-]", " "),  # digits, quotes, symbols
    (r"(?<![A-Za-z])'|'(?![A-Za-z])", " "),  # single quotes, not apostrophes
    (r"(?<![A-Za-z])-|-(?![A-Za-z])", " "),  # dashes, not hyphens
    (r"[^\S\n]+", " "),
    (r" (?=[.,;:?!])", ""),
    (r"[.,;:?!](?: ?[.,;:?!])+", _strongest),  # ";," -> ";"
    (r"([.,;:?!])(?=[A-Za-z])", r"\1 "),
))


def _normalise_lines(texts: Sequence[str]) -> list[str]:
    """Clean texts for TTS without forcing final punctuation (see `clean_text`); one regex pass
    over all of them (newlines are kept apart), which is much faster than one per text."""
    text = "\n".join(" ".join(_VERSE_REF.sub("", t).split()) for t in texts).translate(_QUOTES)
    for pattern, replacement in _CLEANUPS:
        text = pattern.sub(replacement, text)
    return [line.strip(" ").lstrip(".,;:?! ") for line in text.split("\n")]


def _normalise(text: str) -> str:
    return _normalise_lines([text])[0]


def _finish(text: str) -> str:
    """Capital first letter, final . ? or ! (text already normalised)."""
    text = text.rstrip(",;: ")
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".?!" else text + "."


def clean_text(text: str) -> str:
    """Text as the TTS engines should read it (and as ASR should hear it).

    Removes verse references, digits, quotes and other symbols, turns dashes and brackets into
    commas, respells ALL-CAPS words ("LORD" -> "Lord"), tidies spaces and punctuation, starts
    with a capital and ends with . ? or ! ("" if nothing is left).
    """
    return _finish(_normalise(text))


def _words(text: str) -> int:
    return len(text.split())


def _clauses(text: str) -> list[str]:
    """Split at clause punctuation; clauses over MAX_WORDS at commas, then every MAX_WORDS."""
    out: list[str] = []
    for clause in re.split(r"(?<=[.?!;:])\s+", text):
        if _words(clause) <= MAX_WORDS:
            out.append(clause)
            continue
        pieces: list[list[str]] = [[]]
        for part in re.split(r"(?<=,)\s+", clause):
            if pieces[-1] and _words(" ".join([*pieces[-1], part])) > MAX_WORDS:
                pieces.append([])
            pieces[-1].append(part)
        for piece in pieces:
            words = " ".join(piece).split()
            out.extend(" ".join(words[i:i + MAX_WORDS]) for i in range(0, len(words), MAX_WORDS))
    return [c for c in out if c]


def chunk_utterances(segments: Sequence[tuple[str, str]], rng: np.random.Generator
                     ) -> list[tuple[str, list[str]]]:
    """Join (label, text) segments of one document (the verses of a chapter) into utterances.

    Clauses are added until a random target length (MIN_WORDS+4 .. MAX_WORDS-6) is reached at
    a sentence end, never beyond MAX_WORDS; a fragment under MIN_WORDS that fits nowhere is
    dropped. Returns (text, labels of the segments it came from) pairs.
    """
    texts = _normalise_lines([text for _, text in segments])
    clauses = [(label, c) for (label, _), text in zip(segments, texts) for c in _clauses(text)]
    utterances: list[tuple[str, list[str]]] = []
    current: list[tuple[str, str]] = []
    count = 0
    target = int(rng.integers(MIN_WORDS + 4, MAX_WORDS - 5))

    def emit() -> None:
        nonlocal current, count, target
        labels = list(dict.fromkeys(label for label, _ in current))
        utterances.append((" ".join(c for _, c in current), labels))
        current, count = [], 0
        target = int(rng.integers(MIN_WORDS + 4, MAX_WORDS - 5))

    for i, (label, clause) in enumerate(clauses):
        words = _words(clause)
        if count + words > MAX_WORDS:
            if count >= MIN_WORDS:
                emit()
            else:
                current, count = [], 0  # a short fragment that fits nowhere
        current.append((label, clause))
        count += words
        next_words = _words(clauses[i + 1][1]) if i + 1 < len(clauses) else 0
        if count >= target and (clause[-1] in ".?!" or count + next_words > MAX_WORDS):
            emit()
    if count >= MIN_WORDS:
        emit()
    elif current and utterances and _words(utterances[-1][0]) + count <= MAX_WORDS:
        text, labels = utterances[-1]
        extra = [label for label, _ in current if label not in labels]
        utterances[-1] = (text + " " + " ".join(c for _, c in current), labels + extra)
    return utterances


def _bible_chapters() -> list[tuple[str, list[tuple[str, str]]]]:
    """[(chapter like "Ge1", [(verse ref, text), ...]), ...] from `bible`."""
    try:
        result = subprocess.run(BIBLE_COMMAND, capture_output=True, text=True, check=True,
                                timeout=BIBLE_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as error:
        raise RuntimeError(f"cannot read the KJV with `{' '.join(BIBLE_COMMAND)}` ({error}); "
                           "install it with: sudo apt-get install -y bible-kjv") from error
    chapters: dict[str, list[tuple[str, str]]] = {}
    for line in result.stdout.splitlines():
        ref, _, text = line.partition(" ")
        chapter, sep, _ = ref.partition(":")
        if sep and text:
            chapters.setdefault(chapter, []).append((ref, text))
    if len(chapters) < 1000:
        raise RuntimeError(f"`{' '.join(BIBLE_COMMAND)}` printed {len(chapters)} chapters, "
                           "expected 1189 (is bible-kjv installed completely?)")
    return list(chapters.items())


def _fortunes(name: str) -> list[str]:
    """Usable entries of one fortune file: prose only, without the attribution line."""
    path = FORTUNES_DIR / name
    try:
        raw = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise RuntimeError(f"cannot read {path} ({error}); install it with: "
                           "sudo apt-get install -y fortunes") from error
    entries = []
    for entry in raw.split("\n%\n"):
        lines = []
        for line in entry.strip("%\n").splitlines():
            if line.strip().startswith("--"):
                break  # attribution (and whatever follows it)
            lines.append(line)
        text = " ".join(" ".join(lines).translate(_QUOTES).split())
        if (not text or re.search(r"[^A-Za-z .,;:?!'\"()\-]", text)  # digits, symbols, \b, ...
                or re.search(r"\b[A-Z]{2,}\b", text)  # acronyms, shouting
                or re.search(r"\b[A-Z][a-z]*:", text)  # "Q:", "Jones:" dialogue
                or _words(text) > 4 * MAX_WORDS):
            continue
        entries.append(text)
    return entries


def _dedupe_key(text: str) -> str:
    return re.sub(r"[^a-z ]", "", text.lower())


@lru_cache(maxsize=4)
def text_pools(seed: int = 0) -> dict[str, tuple[Utterance, ...]]:
    """The shuffled utterances for "train", "valid" and "test" (disjoint texts)."""
    rng = np.random.default_rng([seed, 0x5EEC])
    utterances: list[Utterance] = []
    for chapter, verses in _bible_chapters():
        for k, (text, refs) in enumerate(chunk_utterances(verses, rng)):
            first, last = refs[0], refs[-1].partition(":")[2]
            ref = first if len(refs) == 1 else f"{first}-{last}"
            utterances.append(Utterance(f"kjv-{chapter.lower()}-{k:03d}", _finish(text),
                                        "kjv", ref))
    for name in FORTUNE_FILES:
        for n, entry in enumerate(_fortunes(name)):
            for k, (text, _) in enumerate(chunk_utterances([(f"{name}#{n}", entry)], rng)):
                utterances.append(Utterance(f"fortune-{name}-{n:04d}-{k}", _finish(text),
                                            "fortunes", f"{name}#{n}"))
    seen: set[str] = set()
    unique = []
    for utterance in utterances:
        key = _dedupe_key(utterance.text)
        if key not in seen and MIN_WORDS <= _words(utterance.text) <= MAX_WORDS:
            seen.add(key)
            unique.append(utterance)
    order = rng.permutation(len(unique))
    shuffled = [unique[i] for i in order]
    n_eval = max(2, round(EVAL_FRACTION * len(shuffled)))
    evaluation = shuffled[:n_eval]
    return {"train": tuple(shuffled[n_eval:]), "valid": tuple(evaluation[0::2]),
            "test": tuple(evaluation[1::2])}
