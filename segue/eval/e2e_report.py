"""The end-to-end evaluation's settings and report (`segue.eval.e2e` runs it): dataclasses that
write report.json (`E2EReport.to_json`) and read it back, this version's or an earlier one's
(`E2EReport.from_json`)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segue.acoustic import acoustic_path
from segue.errors import InputError
from segue.eval.lexicon import LexicalCount
from segue.eval.speaker import SpeakerEncoder

#: What the resynthesis part transcribes, by key.
SYSTEMS = {
    "original": "original",
    "codec": "codec resynthesis",
    "semantic": "resynthesis from semantic tokens",
}


def kept_key(levels: int) -> str:
    """The resynthesis key of the one that keeps the file's own codes of levels < `levels`."""
    return f"keep{levels}"


def system_name(key: str) -> str:
    """What a resynthesis key stands for: SYSTEMS' names, and `kept_key(G)`'s."""
    if key in SYSTEMS:
        return SYSTEMS[key]
    levels = key.removeprefix("keep")
    if not (key.startswith("keep") and levels.isdigit()):
        return key  # a key of a later version: shown as it is
    kept = "level 0" if levels == "1" else f"levels 0-{int(levels) - 1}"
    return f"from semantic tokens + the file's {kept}"


#: What the lexicality measure transcribes for each continuation (`segue.eval.lexicon`).
LEXICAL_KEYS = {
    "continuation": "model continuation",
    "real": "real continuation (same file)",
    "babble": "babble (the file played backwards)",
}
#: The pitch ranges a continuation row holds.
PITCH_KEYS = ("prompt", "continuation")
#: Where a prompt's voice can be lost, each compared with the prompt like a continuation
#: (`E2ESettings.voice_stages`): the file's real next seconds through the codec (the ceiling
#: the acoustic tokens allow), and the acoustic path given the prompt's codes and the file's
#: own semantic tokens for those seconds (a continuation without the semantic LM).
VOICE_STAGES = {
    "codec": "real continuation through the codec",
    "acoustic": "acoustic path on its real semantic tokens",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class E2ESettings:
    """What an end-to-end evaluation does (report.json's "settings"); checked when made.

    n_prompts: prompts to continue (0: no continuation part); prompt_seconds /
    continuation_seconds: each prompt's length and what is generated after it; n_resynth: files
    to resynthesize and transcribe (0: no resynthesis part), each at most max_resynth_seconds
    long; seed: picks the prompts and files and seeds the sampling; n_reference_pairs: pairs of
    real files per reference row (same voice, different voices); acoustic: the model's acoustic
    path, "ar" (coarse + fine LMs) or "soundstorm" (an `AcousticPath` is kept by its name), the
    same seed giving the same prompts and files so two reports compare the paths; similarity: what
    the similarity encoder is (`evaluate_e2e` sets its encoder's `label`); train_manifest: the
    manifest whose train split holds the model's training voices (None: the evaluated manifest's
    train split, if any), each voice's centroid made of train_voice_files files (0: no
    training-voice comparison); lexicality: transcribe continuations of English files and count
    their dictionary words (`segue.eval.lexicon`); voice_stages: also score each prompt's
    real continuation through the codec and through the acoustic path (`VOICE_STAGES`), to
    tell where a continuation loses the voice (one more acoustic generation per prompt);
    keep_levels: for each G, also resynthesize keeping the file's own codes of levels < G (the
    acoustic path generates the finer ones; `kept_key(G)` in the report), to tell which level's
    generation loses the words (one more acoustic generation per file and G).
    """

    n_prompts: int = 8
    prompt_seconds: float = 3.0
    continuation_seconds: float = 4.0
    n_resynth: int = 8
    seed: int = 0
    n_reference_pairs: int = 32
    max_resynth_seconds: float = 20.0
    acoustic: str = "ar"
    similarity: str | None = None
    train_manifest: str | None = None
    train_voice_files: int = 4
    lexicality: bool = True
    voice_stages: bool = True
    keep_levels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("n_prompts", "n_resynth", "n_reference_pairs", "train_voice_files"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                raise InputError(f"{name} must be an integer >= 0, got {value!r}")
        if not (isinstance(self.seed, int) and not isinstance(self.seed, bool)):
            raise InputError(f"seed must be an integer, got {self.seed!r}")
        seconds = (self.prompt_seconds, self.continuation_seconds)
        if not all(_is_number(s) and math.isfinite(s) and s > 0 for s in seconds):
            raise InputError("prompt and continuation seconds must be > 0")
        limit = self.max_resynth_seconds
        if not (_is_number(limit) and limit > 0):
            raise InputError(f"max_resynth_seconds must be > 0, got {limit!r}")
        object.__setattr__(self, "acoustic", acoustic_path(self.acoustic).name)
        if self.similarity is not None and not isinstance(self.similarity, str):
            raise InputError(f"similarity must be a label (a string), got {self.similarity!r}")
        if self.train_manifest is not None and not isinstance(self.train_manifest, str):
            raise InputError(
                f"train_manifest must be a path (a string), got {self.train_manifest!r}"
            )
        for name in ("lexicality", "voice_stages"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be True or False, got {getattr(self, name)!r}")
        levels = self.keep_levels
        if not (
            isinstance(levels, (tuple, list))
            and all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in levels)
        ):
            raise InputError(f"keep_levels must be integers >= 1, got {levels!r}")
        object.__setattr__(self, "keep_levels", tuple(sorted(set(levels))))  # JSON gives a list

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> E2ESettings:
        """From report.json's "settings"; reports older than the acoustic paths and the chroma
        similarity lack those two keys (they were "ar" and the speaker encoder)."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        known.setdefault("similarity", SpeakerEncoder.label)
        known.setdefault("voice_stages", False)  # reports from before the stages
        return cls(**known)


@dataclass(frozen=True)
class Stats:
    """Mean, standard deviation, extremes and count of some numbers (None when there are none)."""

    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    n: int

    @classmethod
    def of(cls, values: list[float | None]) -> Stats:
        """Of the values that are finite numbers (None values are left out)."""
        kept = [float(v) for v in values if v is not None and math.isfinite(v)]
        if not kept:
            return cls(None, None, None, None, 0)
        array = np.array(kept)
        mean, std = float(array.mean()), float(array.std())
        return cls(mean, std, float(array.min()), float(array.max()), len(kept))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stats:
        return cls(data["mean"], data["std"], data["min"], data["max"], data["n"])


def _without_none_files(data: dict[str, Any]) -> dict[str, Any]:
    """A row as report.json has it: no "files" key when no files were written."""
    if data.get("files") is None:
        data.pop("files", None)
    return data


class _Row:
    """One file's row: as a dict (without "files" when none were written), and back."""

    def to_dict(self) -> dict[str, Any]:
        return _without_none_files(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        return cls(**data)


@dataclass
class ContinuationRow(_Row):
    """One prompt and its continuation. similarity: cosine of the generated part's embedding
    and the prompt's; real_similarity: the same for the file's real next seconds (None when
    under MIN_REAL_SECONDS or silent); files: paths relative to out_dir of the WAVs and PNGs
    ("prompt", "continuation", "original", each with a "<key>_png"), None without out_dir;
    training_similarity: the cosine to the nearest training voice's centroid (its group:
    training_voice; None without training voices), real_training_similarity the same for the
    real continuation (None without one); transcripts: what Whisper heard in the
    continuation, the real continuation and babble (`LEXICAL_KEYS`; None for non-English files
    or with lexicality off) and lexical, the count of their (confident) dictionary words;
    pitch_range: semitones of F0 range of "prompt" and
    "continuation" (`segue.eval.pitch`; None values: too little voicing); stages: the
    similarity to the prompt of each of `VOICE_STAGES` and stages_training the nearest
    training voice's (None: voice stages off, or no real continuation)."""

    path: str
    group: str
    text: str | None
    similarity: float
    real_similarity: float | None
    files: dict[str, str] | None = None
    training_similarity: float | None = None
    training_voice: str | None = None
    real_training_similarity: float | None = None
    transcripts: dict[str, str] | None = None
    lexical: dict[str, LexicalCount] | None = None
    pitch_range: dict[str, float | None] | None = None
    stages: dict[str, float] | None = None
    stages_training: dict[str, float] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContinuationRow:
        data = dict(data)
        if data.get("lexical") is not None:
            data["lexical"] = {k: LexicalCount(**v) for k, v in data["lexical"].items()}
        return cls(**data)



@dataclass
class ContinuationReport:
    """The continuation part: similarities of continuations to their prompts, with real audio
    for scale (same file, same voice, another voice). verification: share of (continuation,
    prompt of another voice) pairs where its own prompt is closer (None without such pairs);
    closest_prompt_accuracy: share of continuations whose closest prompt is of their voice
    (None with one voice); chance: that share for a random pick; training_voices: centroids
    compared with; own_prompt_over_training: share of continuations closer to their own prompt
    than to every training voice (None without training voices), real_own_prompt_over_training
    the same share for the files' real continuations (the reference: held-out voices close to a
    training voice cap it); lexicality: Whisper's words,
    dictionary words and confidently heard dictionary words (`segue.eval.lexicon`) of each of
    LEXICAL_KEYS over the English rows (None: off or no English row); pitch_range: Stats of
    the rows' ranges of "prompt" and "continuation" (semitones); stages: Stats of each of
    `VOICE_STAGES`'s similarities to the prompt and stages_over_training their shares closer
    to the prompt than to every training voice (None: voice stages off)."""

    voices: int
    similarity: Stats
    real_similarity: Stats
    same_voice: Stats  # real audio: two files of one voice
    different_voice: Stats  # real audio: files of two voices
    verification: float | None
    verification_pairs: int
    closest_prompt_accuracy: float | None
    chance: float
    rows: list[ContinuationRow]
    training_voices: int = 0
    own_prompt_over_training: float | None = None
    real_own_prompt_over_training: float | None = None
    lexicality: dict[str, LexicalCount] | None = None
    pitch_range: dict[str, Stats] | None = None
    stages: dict[str, Stats] | None = None
    stages_over_training: dict[str, float | None] | None = None

    @property
    def n(self) -> int:
        """Prompts continued."""
        return len(self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "voices": self.voices,
            "similarity": self.similarity.to_dict(),
            "real_similarity": self.real_similarity.to_dict(),
            "reference": {
                "same_voice": self.same_voice.to_dict(),
                "different_voice": self.different_voice.to_dict(),
            },
            "verification": self.verification,
            "verification_pairs": self.verification_pairs,
            "closest_prompt_accuracy": self.closest_prompt_accuracy,
            "chance": self.chance,
            "training_voices": self.training_voices,
            "own_prompt_over_training": self.own_prompt_over_training,
            "real_own_prompt_over_training": self.real_own_prompt_over_training,
            "lexicality": None
            if self.lexicality is None
            else {key: dataclasses.asdict(count) for key, count in self.lexicality.items()},
            "pitch_range": None
            if self.pitch_range is None
            else {key: stats.to_dict() for key, stats in self.pitch_range.items()},
            "stages": None
            if self.stages is None
            else {key: stats.to_dict() for key, stats in self.stages.items()},
            "stages_over_training": self.stages_over_training,
            "rows": [row.to_dict() for row in self.rows],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContinuationReport:
        return cls(
            voices=data["voices"],
            similarity=Stats.from_dict(data["similarity"]),
            real_similarity=Stats.from_dict(data["real_similarity"]),
            same_voice=Stats.from_dict(data["reference"]["same_voice"]),
            different_voice=Stats.from_dict(data["reference"]["different_voice"]),
            verification=data["verification"],
            verification_pairs=data["verification_pairs"],
            closest_prompt_accuracy=data["closest_prompt_accuracy"],
            chance=data["chance"],
            rows=[ContinuationRow.from_dict(row) for row in data["rows"]],
            training_voices=data.get("training_voices", 0),
            own_prompt_over_training=data.get("own_prompt_over_training"),
            real_own_prompt_over_training=data.get("real_own_prompt_over_training"),
            lexicality=None
            if data.get("lexicality") is None
            else {key: LexicalCount(**v) for key, v in data["lexicality"].items()},
            pitch_range=None
            if data.get("pitch_range") is None
            else {key: Stats.from_dict(v) for key, v in data["pitch_range"].items()},
            stages=None
            if data.get("stages") is None
            else {key: Stats.from_dict(v) for key, v in data["stages"].items()},
            stages_over_training=data.get("stages_over_training"),
        )


@dataclass
class ResynthesisRow(_Row):
    """One file, transcribed as each of SYSTEMS ("original", "codec", "semantic"; and `kept_key(G)`
    for each G of E2ESettings.keep_levels): what Whisper heard, its WER and its word recall (None
    in reports older than recall) against the file's normalised text; files: the WAVs and PNGs
    (keys as the transcripts', each with a "<key>_png"), None without out_dir."""

    path: str
    group: str
    text: str
    transcripts: dict[str, str]
    wer: dict[str, float]
    files: dict[str, str] | None = None
    recall: dict[str, float] | None = None



@dataclass
class ResynthesisReport:
    """The resynthesis part: corpus WER, CER and word recall (the share of reference words
    Whisper heard: unlike WER it stays in [0, 1] on babble) of each of SYSTEMS over the rows'
    files."""

    wer: dict[str, float]
    cer: dict[str, float]
    rows: list[ResynthesisRow]
    recall: dict[str, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Files transcribed."""
        return len(self.rows)

    @property
    def systems(self) -> dict[str, str]:
        """What was transcribed, by key (SYSTEMS', then the kept-levels resyntheses')."""
        return {key: system_name(key) for key in self.wer}

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "wer": dict(self.wer),
            "cer": dict(self.cer),
            "recall": dict(self.recall),
            "rows": [row.to_dict() for row in self.rows],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResynthesisReport:
        rows = [ResynthesisRow.from_dict(row) for row in data["rows"]]
        return cls(dict(data["wer"]), dict(data["cer"]), rows, dict(data.get("recall") or {}))


@dataclass(frozen=True)
class Skipped:
    """A file left out: unreadable, silent, or shorter than the prompt."""

    path: str
    reason: str


@dataclass
class E2EReport:
    """An end-to-end evaluation: its split (None: the manifest as given), settings, the model's
    info, sample rate, the two parts (None when off, or for resynthesis when no file has a
    text), the files skipped, the wall time and the LMs' sampling settings. `to_json()` is
    report.json."""

    split: str | None
    settings: E2ESettings
    model: dict[str, Any]
    sample_rate: int
    continuation: ContinuationReport | None
    resynthesis: ResynthesisReport | None
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    #: the LMs' sampling settings used (`PipelineSampling` as a dict; {} in older reports)
    sampling: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values, with report.json's keys and nesting."""
        return {
            "split": self.split,
            "settings": self.settings.to_dict(),
            "model": dict(self.model),
            "sample_rate": self.sample_rate,
            "continuation": None if self.continuation is None else self.continuation.to_dict(),
            "resynthesis": None if self.resynthesis is None else self.resynthesis.to_dict(),
            "skipped": [dataclasses.asdict(s) for s in self.skipped],
            "seconds": self.seconds,
            "sampling": dict(self.sampling),
        }

    def to_json(self) -> str:
        """report.json's text (indented, with a final newline)."""
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> E2EReport:
        """From `to_dict()`'s form, or a report.json of earlier versions (parsed)."""
        cont, res = data.get("continuation"), data.get("resynthesis")
        try:
            return cls(
                split=data["split"],
                settings=E2ESettings.from_dict(data["settings"]),
                model=dict(data.get("model") or {}),
                sample_rate=data["sample_rate"],
                continuation=None if cont is None else ContinuationReport.from_dict(cont),
                resynthesis=None if res is None else ResynthesisReport.from_dict(res),
                skipped=[Skipped(s["path"], s["reason"]) for s in data.get("skipped", [])],
                seconds=data["seconds"],
                sampling=dict(data.get("sampling") or {}),
            )
        except (KeyError, TypeError) as error:
            raise InputError(f"not an end-to-end evaluation report: {error!r}") from error

    @classmethod
    def from_json(cls, text: str) -> E2EReport:
        """From report.json's text (this version's or an earlier one's)."""
        return cls.from_dict(json.loads(text))


def _as_report(report: E2EReport | dict[str, Any]) -> E2EReport:
    return report if isinstance(report, E2EReport) else E2EReport.from_dict(report)
