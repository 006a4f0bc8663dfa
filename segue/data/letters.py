"""Spoken letters and numbers: one real English voice beside TTS voices, a selection set for
semantic tokenizers that is not the test split.

`segue semantic eval` measures how well tokens follow content across voices (ABX) where two
voices say the same thing. In the real-speech corpus (`segue.data.real_speech`) the English
ones are KLettres' `en` and `en_GB`, both held out for test, so a tokenizer's layer, K or
silence gate picked on English real voices would be picked on test. This set is the other
English real voice Debian ships, Asterisk's `en` prompts (`asterisk-core-sounds-en-g722`,
Allison Smith: the letters a-z, the numbers 0-20 and the tens to 90; 54 contents, in none of
segue's corpora), beside a few held-out `valid` voices of the TTS corpus (`segue.data.speech`)
saying the same letters and numbers. Every cross-voice pair is real-vs-TTS or TTS-vs-TTS;
every item is in the `valid` split, and nothing here is trained on.

    segue data make-letters --out corpora/letters
    segue semantic eval corpora/letters/manifest.jsonl --split valid --model NAME=DIR ...
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from segue.data.corpus import BuildSummary, CorpusItem, build_corpus, interleave
from segue.data.debian import DOC, Downloader, Package, default_cache, download_deb, fetch_package
from segue.data.real_speech import (
    ASTERISK_ROOT,
    RealSpeechRenderer,
    asterisk_items,
    check_fetch_tools,
    content_id,
)
from segue.data.speech import (
    SAMPLE_RATE,
    SPEAKERS,
    SPEAKERS_BY_ID,
    check_engines,
    render_speech,
    speaker_splits,
)
from segue.errors import InputError

LANGUAGE = "en"
PACKAGE = Package(f"asterisk-core-sounds-{LANGUAGE}-g722", (f"{ASTERISK_ROOT}/", DOC))
SPLIT = "valid"

#: How the TTS voices are asked to say a letter (a lone "A" is read as the article).
LETTER_NAMES = dict(zip("abcdefghijklmnopqrstuvwxyz", (
    "ay", "bee", "see", "dee", "ee", "eff", "gee", "aitch", "eye", "jay", "kay", "ell", "em",
    "en", "oh", "pee", "queue", "are", "ess", "tee", "you", "vee", "double you", "ex", "why",
    "zee"), strict=True))
_UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
          "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
          "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def spoken(text: str) -> str:
    """What a TTS voice is given for a written letter or number: "B" -> "bee", "7" -> "seven",
    "40" -> "forty". Raises InputError for anything else."""
    written = text.strip().lower()
    if written in LETTER_NAMES:
        return LETTER_NAMES[written]
    if written.isdigit() and int(written) < 100:
        n = int(written)
        if n < 20:
            return _UNITS[n]
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _UNITS[n % 10])
    raise InputError(f"{text!r} is not a letter or a number below 100")


def tts_voices(count: int) -> list[str]:
    """`count` held-out `valid` voices of the TTS corpus, taken in turn from each engine
    (espeak, festival, flite, espeak, ...) in the corpus's fixed order."""
    splits = speaker_splits()
    by_engine: dict[str, list[str]] = {}
    for speaker in SPEAKERS:
        if splits[speaker.id] == SPLIT:
            by_engine.setdefault(speaker.engine, []).append(speaker.id)
    ordered = interleave([by_engine[engine] for engine in sorted(by_engine)])
    if not 1 <= count <= len(ordered):
        raise InputError(f"tts_voices must be 1..{len(ordered)}, got {count}")
    return ordered[:count]


def letters_items(tree: Path, voices: list[str]) -> list[CorpusItem]:
    """The Asterisk `en` prompts whose name says their content (letters, numbers), then each
    of them in every TTS voice of `voices`; all in the `valid` split, sharing `sentence_id`."""
    real = [dataclasses.replace(item, split=SPLIT) for item in asterisk_items(tree, LANGUAGE)
            if item.meta.get("sentence_id")]
    items = list(real)
    for voice in voices:
        speaker = SPEAKERS_BY_ID[voice]
        for item in real:
            written = str(item.meta["text"])
            items.append(CorpusItem(
                uid=f"{voice}_{item.meta['prompt'].replace('/', '-')}", group=voice, split=SPLIT,
                meta={"text": spoken(written), "written": written,
                      "sentence_id": content_id(LANGUAGE, written), "language": LANGUAGE,
                      "source": "tts", "engine": speaker.engine, "voice": speaker.voice}))
    return items


class LettersRenderer:
    """Picklable `render(item)` for `build_corpus`: TTS items through the speech corpus's
    engines, the Asterisk ones from the package cache as the real-speech corpus reads them."""

    def __init__(self, cache: str | os.PathLike):
        self.real = RealSpeechRenderer(cache)

    def __call__(self, item: CorpusItem) -> np.ndarray:
        return render_speech(item) if item.meta.get("source") == "tts" else self.real(item)


def make_letters_corpus(out_dir: str | os.PathLike, tts_voices_count: int = 3,
                        workers: int | None = None, cache: str | os.PathLike | None = None,
                        download: Downloader = download_deb) -> BuildSummary:
    """Fetch the Asterisk `en` package, render its letters and numbers and the same in
    `tts_voices_count` TTS voices into `out_dir` (resumable; see the module docstring)."""
    voices = tts_voices(tts_voices_count)
    check_fetch_tools(download)
    check_engines(texts=False)
    cache = Path(cache) if cache is not None else default_cache()
    tree = fetch_package(PACKAGE, cache, download)
    items = letters_items(tree, voices)
    if not any(item.meta.get("source") != "tts" for item in items):
        raise InputError(f"{PACKAGE.name} holds no letter or number prompt under {ASTERISK_ROOT}")
    return build_corpus(out_dir, items, LettersRenderer(cache), hours=None,
                        sample_rate=SAMPLE_RATE, workers=workers, desc="letters")
