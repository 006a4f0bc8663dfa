"""sWUGGY-style word / non-word pairs: real words of the Debian word list that the corpus texts
use, each with a Wuggy-style non-word (`phonemes.make_nonwords`), in the accent of the held-out
voice that will say both.

    counts = corpus_word_counts()                     # word -> count in the training texts
    voices = [(v.id, v.voice) for v in held_out_voices(("en-us", "en"))]   # segue.eval.probes
    pairs = make_lexical_pairs(2000, seed=0, counts=counts, wordlist=read_wordlist(),
                               voices=voices)

Words are the list's lower-case entries seen at least `min_count` times in the texts, with
`min_phones` to `max_phones` phonemes, drawn in a seeded order; each gets a voice (seeded), and
its pronunciation and the phonotactics in that voice's accent. A non-word is kept when espeak-ng
reads its `[[...]]` input back as a string of the same length and syllable structure that
differs from the word in one or two phonemes and is no word of the list (the phonemes read back
are what is said, and what gold.csv records); the word is kept when its own phonemes read back
unchanged.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from segue.errors import InputError
from segue.eval.probes.phonemes import (
    NonwordRules,
    Phonotactics,
    Pronunciation,
    changes_for,
    lexicon_pronunciations,
    make_nonwords,
    round_trip,
)

#: Debian's `wamerican` word list.
WORDLIST = Path("/usr/share/dict/american-english")
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class LexicalPair:
    """A word and its non-word, said by one voice (a speaker id of `segue.data.speech`)."""

    id: str
    word: str
    frequency: int  # count in the corpus texts
    voice: str
    accent: str
    real: Pronunciation
    fake: Pronunciation


def read_wordlist(path: str | Path = WORDLIST) -> list[str]:
    """The lower-case, letters-only entries of a word list (one word a line), sorted."""
    path = Path(path)
    if not path.is_file():
        hint = " (install it with: sudo apt-get install -y wamerican)" if path == WORDLIST else ""
        raise FileNotFoundError(f"{path}: word list not found{hint}")
    words = {w for w in path.read_text(errors="replace").split() if re.fullmatch(r"[a-z]+", w)}
    if not words:
        raise InputError(f"{path}: no lower-case words in it")
    return sorted(words)


def corpus_word_counts(seed: int = 0, split: str = "train") -> Counter:
    """How often each lower-case word occurs in the speech corpus's texts of a split (the King
    James Bible and the fortunes files, as `segue.data.speech_text.text_pools(seed)` cuts them)."""
    from segue.data.speech_text import text_pools

    counts: Counter = Counter()
    for utterance in text_pools(seed)[split]:
        counts.update(WORD.findall(utterance.text.lower()))
    return counts


def accent_of(voice: str) -> str:
    """The espeak-ng language of a voice ("en-us+edward" -> "en-us")."""
    return voice.split("+")[0]


def make_lexical_pairs(
    n_pairs: int,
    seed: int = 0,
    *,
    counts: Mapping[str, int],
    wordlist: Sequence[str],
    voices: Sequence[tuple[str, str]],
    min_count: int = 5,
    min_phones: int = 3,
    max_phones: int = 10,
    rules: NonwordRules | None = None,
    cache: Path | None = None,
    progress: bool = False,
) -> list[LexicalPair]:
    """`n_pairs` word / non-word pairs (see the module docstring).

    voices: (speaker id, espeak-ng voice such as "en-us+edward") of each voice to use.
    cache: folder for the word list's pronunciations (see `lexicon_pronunciations`).
    Raises InputError when the words run out first.
    """
    if n_pairs < 1:
        raise InputError(f"n_pairs must be >= 1, got {n_pairs}")
    if not voices:
        raise InputError("no voices to say the words")
    rules = rules or NonwordRules()
    accents = sorted({accent_of(v) for _, v in voices})
    lexicon, stats, known = {}, {}, {}
    for accent in tqdm(accents, desc="word list phonemes", unit="accent", disable=not progress):
        lexicon[accent] = lexicon_pronunciations(wordlist, accent, cache)
        stats[accent] = Phonotactics.from_lexicon(lexicon[accent].values())
        known[accent] = {p.key for p in lexicon[accent].values()}
    candidates = [w for w in wordlist if counts.get(w, 0) >= min_count]
    order = np.random.default_rng([seed, 0x1E]).permutation(len(candidates))
    pairs: list[LexicalPair] = []
    used: set[tuple[str, str]] = set()  # (accent, key) of every word and non-word kept
    bar = tqdm(total=n_pairs, desc="non-words", unit="pair", disable=not progress)
    start = 0
    while len(pairs) < n_pairs and start < len(order):
        # One batch of candidates, checked by espeak-ng in one run per accent.
        want = n_pairs - len(pairs)
        batch = []
        while start < len(order) and len(batch) < want + want // 4 + 8:
            index = int(order[start])
            start += 1
            word = candidates[index]
            rng = np.random.default_rng([seed, 0x2E, index])
            speaker, voice = voices[int(rng.integers(len(voices)))]
            accent = accent_of(voice)
            real = lexicon[accent].get(word)
            if real is None or not min_phones <= len(real) <= max_phones:
                continue
            fakes = make_nonwords(real, stats[accent], known[accent], rng, rules=rules)
            if fakes:
                batch.append((word, speaker, accent, real, fakes))
        for word, speaker, accent, real, fake in _checked(batch, known, rules):
            if len(pairs) == n_pairs or (accent, real.key) in used or (accent, fake.key) in used:
                continue
            used |= {(accent, real.key), (accent, fake.key)}
            pairs.append(
                LexicalPair(f"lex{len(pairs):04d}", word, int(counts[word]), speaker, accent,
                            real, fake)
            )  # fmt: skip
            bar.update()
    bar.close()
    if len(pairs) < n_pairs:
        raise InputError(
            f"only {len(pairs)} word / non-word pairs from {len(candidates)} words seen >= "
            f"{min_count} times in the texts; {n_pairs} wanted (lower min_count or n_pairs)"
        )
    return pairs


def _checked(batch: list, known: dict[str, set[str]], rules: NonwordRules):
    """Yield (word, speaker, accent, real, fake) for the batch entries whose word reads back
    unchanged and one of whose non-words reads back as a valid non-word (the first such)."""
    by_accent: dict[str, list[int]] = {}
    for n, entry in enumerate(batch):
        by_accent.setdefault(entry[2], []).append(n)
    heard: dict[int, list[Pronunciation | None]] = {}
    for accent, entries in by_accent.items():
        flat = [p for n in entries for p in (batch[n][3], *batch[n][4])]
        back = round_trip(flat, accent)
        k = 0
        for n in entries:
            size = 1 + len(batch[n][4])
            heard[n] = back[k : k + size]
            k += size
    for n, (word, speaker, accent, real, _) in enumerate(batch):
        said_real, *said_fakes = heard[n]
        if said_real != real:
            continue
        for fake in said_fakes:
            if fake is None or fake.shape != real.shape or fake.stress != real.stress:
                continue
            changed = sum(a != b for a, b in zip(fake.phones, real.phones))
            if 1 <= changed <= changes_for(len(real), rules) and fake.key not in known[accent]:
                yield word, speaker, accent, real, fake
                break
