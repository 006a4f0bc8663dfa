"""End-to-end evaluation of an AudioLM bundle on held-out voices, as in the AudioLM paper, small.

    settings = E2ESettings(n_prompts=8, prompt_seconds=3.0, continuation_seconds=4.0)
    report = evaluate_e2e(model, manifest, settings, split="test", out_dir="eval/e2e")
    print(format_e2e_report(report))  # report: an E2EReport; report.to_json() -> report.json
    report = E2EReport.from_json(Path("eval/e2e/report.json").read_text())

Two parts:

- Continuation (speaker consistency, AudioLM section 5.3): the first `prompt_seconds` of a file
  are continued by `continuation_seconds`; a speaker encoder (Resemblyzer) compares the generated
  part with the prompt. The same numbers for real audio give the scale: the file's own next
  seconds, two files of one voice, files of two voices. Verification: how often a continuation is
  closer to its own prompt than to another voice's prompt (0.5 is chance); closest prompt: how
  often, among all prompts, the nearest one is of its own voice.
- Resynthesis (intelligibility, AudioLM table 1's WER/CER): Whisper tiny.en transcribes the
  original file, its codec resynthesis (encode -> decode at the bundle's levels) and the
  coarse + fine LMs' resynthesis from its ground-truth semantic tokens; each is scored against
  the file's `text` (normalised; corpus WER/CER).

Prompts take one file per voice first (voices in a seeded order), then a second per voice, and
so on. With `out_dir`: every WAV, a spectrogram PNG of each, `index.html` (a listening page like
the AudioLM examples page) and `report.json` (`E2EReport.to_json()`).
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
import random
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from segue import audio as audio_io
from segue.acoustic import PATHS, acoustic_path
from segue.data.manifest import Manifest, ManifestEntry, ManifestError, read_manifest
from segue.errors import InputError
from segue.eval.asr import Transcriber, cer, normalize_text, wer
from segue.eval.speaker import SpeakerEncoder, cosine, reference_pairs

#: Prompts (and files to resynthesize) quieter than this peak are skipped as silent.
MIN_PEAK = 1e-3
#: A file's real continuation shorter than this (seconds) is not scored.
MIN_REAL_SECONDS = 1.0
SYSTEMS = {
    "original": "original",
    "codec": "codec resynthesis",
    "semantic": "resynthesis from semantic tokens",
}


# ---- settings and results


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
    the similarity encoder is (`evaluate_e2e` sets its encoder's `label`).
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

    def __post_init__(self) -> None:
        for name in ("n_prompts", "n_resynth", "n_reference_pairs"):
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> E2ESettings:
        """From report.json's "settings"; reports older than the acoustic paths and the chroma
        similarity lack those two keys (they were "ar" and the speaker encoder)."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        known.setdefault("similarity", SpeakerEncoder.label)
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
    ("prompt", "continuation", "original", each with a "<key>_png"), None without out_dir."""

    path: str
    group: str
    text: str | None
    similarity: float
    real_similarity: float | None
    files: dict[str, str] | None = None



@dataclass
class ContinuationReport:
    """The continuation part: similarities of continuations to their prompts, with real audio
    for scale (same file, same voice, another voice). verification: share of (continuation,
    prompt of another voice) pairs where its own prompt is closer (None without such pairs);
    closest_prompt_accuracy: share of continuations whose closest prompt is of their voice
    (None with one voice); chance: that share for a random pick."""

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
        )


@dataclass
class ResynthesisRow(_Row):
    """One file, transcribed as each of SYSTEMS ("original", "codec", "semantic"): what Whisper
    heard and its WER against the file's normalised text; files: the WAVs and PNGs (keys as
    SYSTEMS, each with a "<key>_png"), None without out_dir."""

    path: str
    group: str
    text: str
    transcripts: dict[str, str]
    wer: dict[str, float]
    files: dict[str, str] | None = None



@dataclass
class ResynthesisReport:
    """The resynthesis part: corpus WER and CER of each of SYSTEMS over the rows' files."""

    wer: dict[str, float]
    cer: dict[str, float]
    rows: list[ResynthesisRow]

    @property
    def n(self) -> int:
        """Files transcribed."""
        return len(self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "wer": dict(self.wer),
            "cer": dict(self.cer),
            "rows": [row.to_dict() for row in self.rows],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResynthesisReport:
        rows = [ResynthesisRow.from_dict(row) for row in data["rows"]]
        return cls(dict(data["wer"]), dict(data["cer"]), rows)


@dataclass(frozen=True)
class Skipped:
    """A file left out: unreadable, silent, or shorter than the prompt."""

    path: str
    reason: str


@dataclass
class E2EReport:
    """An end-to-end evaluation: its split (None: the manifest as given), settings, the model's
    info, sample rate, the two parts (None when off, or for resynthesis when no file has a
    text), the files skipped and the wall time. `to_json()` is report.json."""

    split: str | None
    settings: E2ESettings
    model: dict[str, Any]
    sample_rate: int
    continuation: ContinuationReport | None
    resynthesis: ResynthesisReport | None
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0

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
            )
        except (KeyError, TypeError) as error:
            raise InputError(f"not an end-to-end evaluation report: {error!r}") from error

    @classmethod
    def from_json(cls, text: str) -> E2EReport:
        """From report.json's text (this version's or an earlier one's)."""
        return cls.from_dict(json.loads(text))


def _as_report(report: E2EReport | dict[str, Any]) -> E2EReport:
    return report if isinstance(report, E2EReport) else E2EReport.from_dict(report)


#: evaluate_e2e's keyword arguments before E2ESettings (accepted for a release).
LEGACY_KEYWORDS = tuple(f.name for f in dataclasses.fields(E2ESettings) if f.name != "similarity")


def evaluate_e2e(
    model,
    manifest: Manifest | str | os.PathLike,
    settings: E2ESettings | None = None,
    *,
    split: str | None = "test",
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    speaker: SpeakerEncoder | None = None,
    transcriber: Transcriber | None = None,
    **legacy: Any,
) -> E2EReport:
    """Continuations and resyntheses of a manifest split by an `AudioLM`; returns the report.

    settings: what to do (default `E2ESettings()`); the keywords of earlier versions
    (n_prompts=..., acoustic=..., see LEGACY_KEYWORDS) still work for a release, in place of a
    settings object, not with one. See `format_e2e_report` for what the numbers are. Files that
    cannot be read, or are silent, are skipped (and listed). speaker / transcriber: loaded
    encoders to reuse (default: new ones); speaker may be any encoder with `embed(audio, rate)`
    and a `label`, e.g. `ChromaEncoder` (pitch classes) for music.
    """
    started = time.perf_counter()
    settings = _settings(settings, legacy)
    manifest = _split(manifest, split)
    if not manifest.entries:
        raise InputError(f"no files in the {split!r} split")
    if settings.n_prompts and settings.prompt_seconds >= model.max_prompt_seconds:
        raise InputError(
            f"prompt of {settings.prompt_seconds:g} s: this model takes prompts under "
            f"{model.max_prompt_seconds:.2f} s (its semantic context)"
        )
    out = None if out_dir is None else Path(out_dir)
    speaker = speaker or SpeakerEncoder()
    transcriber = transcriber or Transcriber(threads=torch.get_num_threads())
    label = getattr(speaker, "label", SpeakerEncoder.label)
    settings = dataclasses.replace(settings, similarity=label)
    continuation, resynthesis, skipped = None, None, []
    with torch.inference_mode():
        if settings.n_prompts > 0:
            continuation, left_out = _continuations(
                model, manifest, settings, speaker, out, progress
            )
            skipped += left_out
        if settings.n_resynth > 0:
            resynthesis, left_out = _resyntheses(
                model, manifest, settings, transcriber, out, progress
            )
            skipped += left_out
    report = E2EReport(
        split=split,
        settings=settings,
        model=dict(model.info),
        sample_rate=model.sample_rate,
        continuation=continuation,
        resynthesis=resynthesis,
        skipped=skipped,
        seconds=round(time.perf_counter() - started, 2),
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "index.html").write_text(listening_page(report), encoding="utf-8")
        (out / "report.json").write_text(report.to_json(), encoding="utf-8")
    return report


def _settings(settings: E2ESettings | None, legacy: dict[str, Any]) -> E2ESettings:
    """The settings object, or one made of earlier versions' keywords."""
    unknown = sorted(set(legacy) - set(LEGACY_KEYWORDS))
    if unknown:
        raise TypeError(f"evaluate_e2e() got an unexpected keyword argument {unknown[0]!r}")
    if settings is None:
        if legacy:
            warnings.warn(
                "evaluate_e2e(n_prompts=..., ...): pass an E2ESettings instead (the keywords "
                "go in a later release)",
                DeprecationWarning,
                stacklevel=3,
            )
        return E2ESettings(**legacy)
    if legacy:
        raise TypeError(
            f"evaluate_e2e(): pass the settings either as an E2ESettings or as keywords, not "
            f"both (got settings and {', '.join(sorted(legacy))})"
        )
    if not isinstance(settings, E2ESettings):
        raise TypeError(f"settings must be an E2ESettings, got {type(settings).__name__}")
    return settings


# ---- continuation


def _continuations(
    model, manifest, settings: E2ESettings, speaker, out, progress
) -> tuple[ContinuationReport, list[Skipped]]:
    """Continue up to n_prompts prompts; speaker similarities against prompts and real audio.
    Returns the part and the files skipped."""
    rate, seed = model.sample_rate, settings.seed
    prompt_s, new_s = settings.prompt_seconds, settings.continuation_seconds
    length = round(prompt_s * rate)
    usable = [e for e in manifest.entries if e.duration >= prompt_s - 1e-6]
    if not usable:
        raise InputError(f"no file of the split is {prompt_s:g} s long (the prompt length)")
    rows: list[ContinuationRow] = []
    skipped: list[Skipped] = []
    prompts, generated = [], []
    bar = tqdm(total=settings.n_prompts, desc="continuations", disable=not progress)
    for entry in round_robin(usable, seed):
        if len(rows) >= settings.n_prompts:
            break
        audio = _load(manifest, entry, rate, prompt_s + new_s)
        if isinstance(audio, Skipped):
            skipped.append(audio)
            continue
        prompt = audio[:length]
        if len(prompt) < length:
            skipped.append(Skipped(entry.path, "shorter than the prompt"))
            continue
        i = len(rows)
        full = (
            model.continue_(
                prompt, new_s, seed=seed + i, progress=False, acoustic=settings.acoustic
            )[0]
            .float()
            .cpu()
        )
        full = full.numpy()
        new = full[length:]
        e_prompt, e_new = speaker.embed(prompt, rate), speaker.embed(new, rate)
        real = audio[length:]
        has_real = len(real) >= MIN_REAL_SECONDS * rate and np.abs(real).max() > MIN_PEAK
        row = ContinuationRow(
            path=entry.path,
            group=entry.group,
            text=entry.extra.get("text"),
            similarity=cosine(e_prompt, e_new),
            real_similarity=cosine(e_prompt, speaker.embed(real, rate)) if has_real else None,
        )
        if out is not None:
            row.files = _write_continuation(out, i, entry, prompt, full, audio, rate, prompt_s)
        rows.append(row)
        prompts.append(e_prompt)
        generated.append(e_new)
        bar.update()
    bar.close()
    if not rows:
        raise InputError("no usable prompt in the split (all unreadable or silent)")
    # sim[i, j]: continuation i against prompt j.
    sim = np.array([[cosine(g, p) for p in prompts] for g in generated])
    groups = [r.group for r in rows]
    wins = [
        sim[i, i] > sim[i, j]
        for i in range(len(rows))
        for j in range(len(rows))
        if groups[j] != groups[i]
    ]
    voices = len(set(groups))
    closest = [groups[int(np.argmax(sim[i]))] == groups[i] for i in range(len(rows))]
    reference = reference_pairs(
        manifest,
        None,
        settings.n_reference_pairs,
        seed,
        encoder=speaker,
        seconds=(prompt_s, new_s),
    )
    part = ContinuationReport(
        voices=voices,
        similarity=Stats.of([r.similarity for r in rows]),
        real_similarity=Stats.of([r.real_similarity for r in rows]),
        same_voice=Stats.of(reference["same"]),
        different_voice=Stats.of(reference["different"]),
        verification=float(np.mean(wins)) if wins else None,
        verification_pairs=len(wins),
        closest_prompt_accuracy=float(np.mean(closest)) if voices > 1 else None,
        chance=float(np.mean([groups.count(g) / len(groups) for g in groups])),
        rows=rows,
    )
    return part, skipped


def _write_continuation(out, i, entry, prompt, full, audio, rate, prompt_s) -> dict[str, str]:
    """WAVs + spectrograms of prompt, prompt + continuation, and the original of that length."""
    from segue.plot import plot_spectrogram

    name = f"continuation/{i:02d}"
    files = {"prompt": f"{name}_prompt.wav", "continuation": f"{name}_continuation.wav"}
    sounds = {"prompt": prompt, "continuation": full}
    if len(audio) > len(prompt):
        files["original"] = f"{name}_original.wav"
        sounds["original"] = audio
    for key, wav in list(files.items()):
        audio_io.save(out / wav, sounds[key], rate)
        png = wav.removesuffix(".wav") + ".png"
        boundary = None if key == "prompt" else prompt_s
        title = {"original": "original (real audio after the line)"}.get(key, key)
        plot_spectrogram(sounds[key], rate, out / png, boundary, title=f"{entry.group}: {title}")
        files[f"{key}_png"] = png
    return files


# ---- resynthesis


def _resyntheses(
    model, manifest, settings: E2ESettings, transcriber, out, progress
) -> tuple[ResynthesisReport | None, list[Skipped]]:
    """Transcribe original, codec and semantic-token resyntheses of files that have a text.
    Returns the part (None when no file has a text and fits) and the files skipped."""
    rate, seed = model.sample_rate, settings.seed
    usable = [
        e
        for e in manifest.entries
        if normalize_text(str(e.extra.get("text") or ""))
        and e.duration <= settings.max_resynth_seconds
    ]
    if not usable:
        return None, []
    rows: list[ResynthesisRow] = []
    skipped: list[Skipped] = []
    bar = tqdm(total=settings.n_resynth, desc="resynthesis", disable=not progress)
    for entry in round_robin(usable, seed):
        if len(rows) >= settings.n_resynth:
            break
        audio = _load(manifest, entry, rate, None)
        if isinstance(audio, Skipped):
            skipped.append(audio)
            continue
        i = len(rows)
        x = torch.from_numpy(audio)[None].to(model.device)
        codes = model.codec.encode(x)[:, : model.n_levels]
        resynthesis = model.resynthesize(
            x, seed=seed + i, progress=False, acoustic=settings.acoustic
        )
        sounds = {
            "original": audio,
            "codec": _fit(model.codec.decode(codes)[0], len(audio)),
            "semantic": _fit(resynthesis[0], len(audio)),
        }
        text = str(entry.extra["text"])
        heard = {key: transcriber.transcribe(wav, rate) for key, wav in sounds.items()}
        reference = normalize_text(text)
        row = ResynthesisRow(
            path=entry.path,
            group=entry.group,
            text=text,
            transcripts=heard,
            wer={k: wer([reference], [normalize_text(h)]) for k, h in heard.items()},
        )
        if out is not None:
            row.files = _write_resynthesis(out, i, entry, sounds, rate)
        rows.append(row)
        bar.update()
    bar.close()
    if not rows:
        return None, skipped
    refs = [normalize_text(r.text) for r in rows]
    part = ResynthesisReport(wer={}, cer={}, rows=rows)
    for key in SYSTEMS:
        hyps = [normalize_text(r.transcripts[key]) for r in rows]
        part.wer[key] = wer(refs, hyps)
        part.cer[key] = cer(refs, hyps)
    return part, skipped


def _write_resynthesis(out, i, entry, sounds, rate) -> dict[str, str]:
    from segue.plot import plot_spectrogram

    files = {}
    for key, wav in sounds.items():
        name = f"resynthesis/{i:02d}_{key}"
        audio_io.save(out / f"{name}.wav", wav, rate)
        plot_spectrogram(wav, rate, out / f"{name}.png", title=f"{entry.group}: {SYSTEMS[key]}")
        files[key], files[f"{key}_png"] = f"{name}.wav", f"{name}.png"
    return files


# ---- helpers


def round_robin(entries: list[ManifestEntry], seed: int) -> Iterator[ManifestEntry]:
    """Entries one voice (group) at a time: one file of each voice, then a second of each, ...
    Voices and each voice's files in a seeded random order."""
    rng = random.Random(seed)
    by_group: dict[str, list[ManifestEntry]] = defaultdict(list)
    for entry in sorted(entries, key=lambda e: e.path):
        by_group[entry.group].append(entry)
    names = sorted(by_group)
    rng.shuffle(names)
    for name in names:
        rng.shuffle(by_group[name])
    for turn in range(max(len(v) for v in by_group.values())):
        for name in names:
            if turn < len(by_group[name]):
                yield by_group[name][turn]


def _split(manifest: Manifest | str | os.PathLike, split: str | None) -> Manifest:
    if not isinstance(manifest, Manifest):
        return read_manifest(manifest, split=split)
    if split is None:
        return manifest
    if all(e.split is None for e in manifest.entries):
        raise ManifestError("the manifest has no split information (pass split=None)")
    return manifest.subset(split)


def _load(manifest, entry, rate, seconds) -> np.ndarray | Skipped:
    """The first `seconds` of an entry at `rate` ([T] float32), or why it is skipped."""
    try:
        audio = audio_io.load(manifest.resolve(entry), rate, duration=seconds)
    except audio_io.AudioError as error:
        return Skipped(entry.path, str(error))
    if float(np.abs(audio).max()) < MIN_PEAK:
        return Skipped(entry.path, "silent")
    return audio


def _fit(audio: torch.Tensor, length: int) -> np.ndarray:
    """[T'] tensor -> [length] float32 array (cut, or zero-padded)."""
    x = audio.float().cpu().numpy()[:length]
    return np.pad(x, (0, length - len(x))).astype(np.float32)


# ---- output


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_e2e_report(report: E2EReport | dict[str, Any]) -> str:
    """The report (or a parsed report.json) as small plain-text tables (markdown-compatible)."""
    report = _as_report(report)
    s = report.settings
    path = PATHS[s.acoustic].label
    lines = [
        f"end-to-end evaluation, split {report.split}, seed {s.seed}, acoustic tokens by "
        f"{path} ({s.acoustic})"
    ]
    cont = report.continuation
    if cont is not None:
        lines += [
            "",
            f"{s.similarity or SpeakerEncoder.label}: {cont.n} prompts of "
            f"{s.prompt_seconds:g} s from {cont.voices} voices, continued by "
            f"{s.continuation_seconds:g} s",
            "",
            "| compared with the prompt           |  mean |   std |   n |",
            "|------------------------------------|-------|-------|-----|",
        ]
        table = [
            ("model continuation", cont.similarity),
            ("real continuation (same file)", cont.real_similarity),
            ("real, same voice (another file)", cont.same_voice),
            ("real, another voice", cont.different_voice),
        ]
        for name, row in table:
            lines.append(f"| {name:<34} | {_num(row.mean):>5} | {_num(row.std):>5} | {row.n:>3} |")
        lines += [
            "",
            f"verification (closer to its own prompt than to another voice's): "
            f"{_pct(cont.verification)} of {cont.verification_pairs} pairs (chance 50%)",
            f"closest prompt is its own voice: {_pct(cont.closest_prompt_accuracy)} "
            f"(chance {_pct(cont.chance)})",
        ]
    res = report.resynthesis
    if res is not None:
        lines += [
            "",
            f"intelligibility (Whisper tiny.en, normalised text): {res.n} files",
            "",
            "| audio                            |    WER |    CER |",
            "|----------------------------------|--------|--------|",
        ]
        for key, name in SYSTEMS.items():
            lines.append(f"| {name:<32} | {_pct(res.wer[key]):>6} | {_pct(res.cer[key]):>6} |")
    elif s.n_resynth:
        lines += ["", "intelligibility: no readable file with a `text` field in the split"]
    if report.skipped:
        lines += ["", f"skipped {len(report.skipped)} file(s) (unreadable or silent)"]
    lines += ["", f"{report.seconds:.0f} s"]
    return "\n".join(lines)


_STYLE = """
body { font-family: sans-serif; margin: 2em; }
table { border-collapse: collapse; margin-bottom: 2em; }
td, th { border: 1px solid #ccc; padding: 6px; vertical-align: top; text-align: left; }
img { width: 360px; display: block; } audio { width: 360px; }
.text { max-width: 260px; font-size: 90%; } .heard { font-size: 85%; color: #555; }
pre { background: #f6f6f6; padding: 1em; }
"""


def _cell(files: dict[str, str] | None, key: str, note: str = "") -> str:
    if not files or key not in files:
        return "<td>-</td>"
    wav, png = html.escape(files[key]), html.escape(files[f"{key}_png"])
    extra = f'<div class="heard">{html.escape(note)}</div>' if note else ""
    return (
        f'<td><audio controls preload="none" src="{wav}"></audio>'
        f'<img src="{png}" alt="{wav}" loading="lazy">{extra}</td>'
    )


def listening_page(report: E2EReport | dict[str, Any]) -> str:
    """index.html: the summary, then tables of players and spectrograms (relative paths)."""
    report = _as_report(report)
    s = report.settings
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>segue: end-to-end evaluation</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>segue: end-to-end evaluation</h1>",
        f"<pre>{html.escape(format_e2e_report(report))}</pre>",
    ]
    cont = report.continuation
    if cont is not None:
        parts += [
            f"<h2>Continuation ({s.prompt_seconds:g} s prompt, "
            f"{s.continuation_seconds:g} s generated)</h2>",
            "<p>The dashed line marks where the prompt ends. Original: the same file, as long.</p>",
            "<table><tr><th>voice</th><th>prompt</th><th>continuation</th><th>original</th></tr>",
        ]
        for row in cont.rows:
            similarity = f"similarity to the prompt {row.similarity:.3f}"
            real = row.real_similarity
            parts.append(
                f'<tr><td class="text">{html.escape(row.group)}<br>'
                f"<small>{html.escape(row.path)}</small></td>"
                + _cell(row.files, "prompt")
                + _cell(row.files, "continuation", similarity)
                + _cell(row.files, "original", "" if real is None else f"similarity {real:.3f}")
                + "</tr>"
            )
        parts.append("</table>")
    res = report.resynthesis
    if res is not None:
        parts += [
            "<h2>Resynthesis (what Whisper heard under each player)</h2>",
            "<table><tr><th>text</th>"
            + "".join(f"<th>{html.escape(name)}</th>" for name in SYSTEMS.values())
            + "</tr>",
        ]
        for row in res.rows:
            cells = "".join(
                _cell(row.files, key, f"heard: {row.transcripts[key]} (WER {_pct(row.wer[key])})")
                for key in SYSTEMS
            )
            parts.append(
                f'<tr><td class="text">{html.escape(row.text)}<br>'
                f"<small>{html.escape(row.group)}</small></td>{cells}</tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
