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
the AudioLM examples page) and `report.json` (`E2EReport.to_json()`; the settings and report
dataclasses are in `segue.eval.e2e_report`, the text and pages, with `comparison_page` for
several runs side by side, in `segue.eval.e2e_page`).

Continuations are also compared with the model's training voices (the centroid of each voice of
a train split: a continuation nearer to one of them than to its own prompt has drifted to a
voice the model learned), their pitch range is set against the prompt's (`segue.eval.pitch`),
and those of English files are transcribed for lexicality (`segue.eval.lexicon`), with the
file's real continuation and babble (the file played backwards) as references. Resyntheses
get word recall beside WER: the share of reference words heard, which stays in [0, 1] when the
recogniser babbles.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from segue import audio as audio_io
from segue.acoustic import acoustic_path
from segue.config import to_dict
from segue.data.manifest import Manifest, ManifestEntry, ManifestError, read_manifest
from segue.errors import InputError
from segue.eval.asr import Transcriber, cer, normalize_text, wer, word_recall
from segue.eval.e2e_page import comparison_page, format_e2e_report, listening_page
from segue.eval.e2e_report import (
    LEXICAL_KEYS,
    PITCH_KEYS,
    SYSTEMS,
    VOICE_STAGES,
    ContinuationReport,
    ContinuationRow,
    E2EReport,
    E2ESettings,
    ResynthesisReport,
    ResynthesisRow,
    Skipped,
    Stats,
    kept_key,
    system_name,
)
from segue.eval.lexicon import LexicalCount, Lexicon, babble
from segue.eval.pitch import pitch_range
from segue.eval.speaker import SpeakerEncoder, cosine, reference_pairs, voice_centroids

#: Prompts (and files to resynthesize) quieter than this peak are skipped as silent.
MIN_PEAK = 1e-3
#: A file's real continuation shorter than this (seconds) is not scored.
MIN_REAL_SECONDS = 1.0
#: The report's dataclasses live in `segue.eval.e2e_report`; importable from here too.
__all__ = [
    "SYSTEMS", "ContinuationReport", "ContinuationRow", "E2EReport", "E2ESettings",
    "ResynthesisReport", "ResynthesisRow", "Skipped", "Stats", "comparison_page", "evaluate_e2e",
    "format_e2e_report", "listening_page", "round_robin", "training_voices",
]  # fmt: skip


#: evaluate_e2e's keyword arguments before E2ESettings (accepted for a release); settings added
#: since (train_manifest, train_voice_files, lexicality) come only in an E2ESettings.
LEGACY_KEYWORDS = (
    "n_prompts", "prompt_seconds", "continuation_seconds", "n_resynth", "seed",
    "n_reference_pairs", "max_resynth_seconds", "acoustic",
)  # fmt: skip


def _sampling_used(model: Any) -> dict[str, Any]:
    """The model's LM sampling settings as a dict ({} for a model without them)."""
    sampling = getattr(model, "sampling", None)
    return to_dict(sampling) if dataclasses.is_dataclass(sampling) else {}


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
    voices: dict[str, np.ndarray] | None = None,
    **legacy: Any,
) -> E2EReport:
    """Continuations and resyntheses of a manifest split by an `AudioLM`; returns the report.

    settings: what to do (default `E2ESettings()`); the keywords of earlier versions
    (n_prompts=..., acoustic=..., see LEGACY_KEYWORDS) still work for a release, in place of a
    settings object, not with one. See `format_e2e_report` for what the numbers are. Files that
    cannot be read, or are silent, are skipped (and listed). speaker / transcriber: loaded
    encoders to reuse (default: new ones); speaker may be any encoder with `embed(audio, rate)`
    and a `label`, e.g. `ChromaEncoder` (pitch classes) for music. voices: the training voices'
    centroids made by `training_voices` with the same speaker encoder, to reuse across calls
    (default: made here; embedding them takes longer than a few continuations).
    """
    started = time.perf_counter()
    settings = _settings(settings, legacy)
    source, manifest = manifest, _split(manifest, split)
    if not manifest.entries:
        raise InputError(f"no files in the {split!r} split")
    if settings.n_prompts and settings.prompt_seconds >= model.max_prompt_seconds:
        raise InputError(
            f"prompt of {settings.prompt_seconds:g} s: this model takes prompts under "
            f"{model.max_prompt_seconds:.2f} s (its semantic context)"
        )
    if settings.n_resynth:
        for levels in settings.keep_levels:  # before any compute
            acoustic_path(settings.acoustic).check_given(model, levels)
    out = None if out_dir is None else Path(out_dir)
    speaker = speaker or SpeakerEncoder()
    transcriber = transcriber or Transcriber(threads=torch.get_num_threads())
    label = getattr(speaker, "label", SpeakerEncoder.label)
    settings = dataclasses.replace(settings, similarity=label)
    continuation, resynthesis, skipped = None, None, []
    with torch.inference_mode():
        if settings.n_prompts > 0:
            if voices is None:
                voices = training_voices(source, settings, speaker, progress)
            continuation, left_out = _continuations(
                model, manifest, settings, speaker, transcriber, voices, out, progress
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
        sampling=_sampling_used(model),
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
    model, manifest, settings: E2ESettings, speaker, transcriber, voices, out, progress
) -> tuple[ContinuationReport, list[Skipped]]:
    """Continue up to n_prompts prompts; speaker similarities against prompts, real audio and
    the training voices' centroids (`voices`, {group: [256]}); pitch ranges; transcripts of
    English continuations for lexicality. Returns the part and the files skipped."""
    rate, seed = model.sample_rate, settings.seed
    prompt_s, new_s = settings.prompt_seconds, settings.continuation_seconds
    length = round(prompt_s * rate)
    usable = [e for e in manifest.entries if e.duration >= prompt_s - 1e-6]
    if not usable:
        raise InputError(f"no file of the split is {prompt_s:g} s long (the prompt length)")
    rows: list[ContinuationRow] = []
    skipped: list[Skipped] = []
    prompts, generated = [], []
    speech = getattr(speaker, "label", SpeakerEncoder.label) == SpeakerEncoder.label
    lexicon = _lexicon(settings) if speech else None  # not for music (a pitch-class encoder)
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
        e_real = speaker.embed(real, rate) if has_real else None
        row = ContinuationRow(
            path=entry.path,
            group=entry.group,
            text=entry.extra.get("text"),
            similarity=cosine(e_prompt, e_new),
            real_similarity=None if e_real is None else cosine(e_prompt, e_real),
            pitch_range={
                "prompt": pitch_range(prompt, rate),
                "continuation": pitch_range(new, rate),
            },
        )
        nearest = _nearest_voice(e_new, voices, entry.group)
        if nearest is not None:
            row.training_voice, row.training_similarity = nearest
            if e_real is not None:
                row.real_training_similarity = _nearest_voice(e_real, voices, entry.group)[1]
        stage_audio = {}
        if settings.voice_stages and has_real:
            stage_audio = _voice_stages(model, prompt, real, settings, seed + i)
            embedded = {key: speaker.embed(wav, rate) for key, wav in stage_audio.items()}
            row.stages = {key: cosine(e_prompt, e) for key, e in embedded.items()}
            if nearest is not None:  # some training voice other than its own
                row.stages_training = {
                    key: _nearest_voice(e, voices, entry.group)[1] for key, e in embedded.items()
                }
        if lexicon is not None and _is_english(entry):
            clips = {
                "continuation": new,
                "real": real if has_real else None,
                "babble": babble(audio)[: len(new)],
            }
            heard = {k: transcriber.words(c, rate) for k, c in clips.items() if c is not None}
            row.transcripts = {k: " ".join(w.text for w in words) for k, words in heard.items()}
            row.lexical = {k: lexicon.count(words) for k, words in heard.items()}
        if out is not None:
            row.files = _write_continuation(
                out, i, entry, prompt, full, audio, rate, prompt_s, stage_audio
            )
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
    n_voices = len(set(groups))
    closest = [groups[int(np.argmax(sim[i]))] == groups[i] for i in range(len(rows))]
    reference = reference_pairs(
        manifest,
        None,
        settings.n_reference_pairs,
        seed,
        encoder=speaker,
        seconds=(prompt_s, new_s),
    )
    training = [r for r in rows if r.training_similarity is not None]
    real_training = [r for r in training if r.real_training_similarity is not None]
    part = ContinuationReport(
        voices=n_voices,
        similarity=Stats.of([r.similarity for r in rows]),
        real_similarity=Stats.of([r.real_similarity for r in rows]),
        same_voice=Stats.of(reference["same"]),
        different_voice=Stats.of(reference["different"]),
        verification=float(np.mean(wins)) if wins else None,
        verification_pairs=len(wins),
        closest_prompt_accuracy=float(np.mean(closest)) if n_voices > 1 else None,
        chance=float(np.mean([groups.count(g) / len(groups) for g in groups])),
        rows=rows,
        training_voices=len(voices),
        own_prompt_over_training=float(
            np.mean([r.similarity > r.training_similarity for r in training])
        )
        if training
        else None,
        real_own_prompt_over_training=float(
            np.mean([r.real_similarity > r.real_training_similarity for r in real_training])
        )
        if real_training
        else None,
        pitch_range={key: Stats.of([r.pitch_range[key] for r in rows]) for key in PITCH_KEYS},
    )
    if settings.voice_stages:
        staged = [r for r in rows if r.stages is not None]
        part.stages = {key: Stats.of([r.stages[key] for r in staged]) for key in VOICE_STAGES}
        with_training = [r for r in staged if r.stages_training is not None]
        part.stages_over_training = {
            key: float(np.mean([r.stages[key] > r.stages_training[key] for r in with_training]))
            if with_training
            else None
            for key in VOICE_STAGES
        }
    if any(r.lexical for r in rows):
        part.lexicality = {
            key: sum((r.lexical[key] for r in rows if key in (r.lexical or {})), LexicalCount())
            for key in LEXICAL_KEYS
        }
    return part, skipped


def _voice_stages(
    model, prompt: np.ndarray, real: np.ndarray, settings: E2ESettings, seed: int
) -> dict[str, np.ndarray]:
    """The real continuation [T] through each of `VOICE_STAGES`: {key: [T] audio}."""
    x = torch.from_numpy(real)[None].to(model.device)
    acoustic = model.resynthesize(
        x, prompt, seed=seed, progress=False, acoustic=settings.acoustic
    )  # the prompt's codes and semantic tokens, then the real continuation's semantic tokens
    return {"codec": _codec_round_trip(model, x), "acoustic": _fit(acoustic[0], len(real))}


def training_voices(
    source: Manifest | str | os.PathLike,
    settings: E2ESettings,
    speaker: SpeakerEncoder,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """The model's training voices as centroids ({group: [256]}): the train split of
    settings.train_manifest, else of `source` (the evaluated manifest, whole); {} when off or
    there is none. Pass the result to `evaluate_e2e(voices=...)` to make them once for several
    evaluations (both acoustic paths) with the same speaker encoder."""
    if settings.train_voice_files == 0:
        return {}
    where = settings.train_manifest if settings.train_manifest is not None else source
    try:
        train = _split(where, "train")
    except ManifestError:
        if settings.train_manifest is not None:
            raise
        return {}  # the evaluated manifest has no splits: no training voices to compare with
    if not train.entries:
        if settings.train_manifest is not None:
            raise InputError(f"no files in the train split of {settings.train_manifest}")
        return {}
    return voice_centroids(
        train,
        None,
        settings.train_voice_files,
        settings.seed,
        encoder=speaker,
        seconds=settings.prompt_seconds + settings.continuation_seconds,
        progress=progress,
    )


def _nearest_voice(embedding, voices: dict[str, np.ndarray], own: str) -> tuple[str, float] | None:
    """(group, cosine) of the centroid nearest to `embedding`, the row's own group left out."""
    scores = {g: cosine(embedding, c) for g, c in voices.items() if g != own}
    if not scores:
        return None
    group = max(scores, key=scores.__getitem__)
    return group, scores[group]


def _lexicon(settings: E2ESettings) -> Lexicon | None:
    """The word list for lexicality (None when off, or missing: said once, as a warning)."""
    if not settings.lexicality:
        return None
    try:
        return Lexicon.load()
    except InputError as error:
        warnings.warn(f"lexicality left out: {error}", stacklevel=3)
        return None


def _is_english(entry: ManifestEntry) -> bool:
    """Files without a `language` are taken as English (the TTS corpus has none)."""
    return str(entry.extra.get("language") or "en").lower().startswith("en")


def _write_continuation(
    out, i, entry, prompt, full, audio, rate, prompt_s, stages
) -> dict[str, str]:
    """WAVs + spectrograms of prompt, prompt + continuation, the original of that length, and
    the prompt + each voice stage's audio (`stages`, {key: [T]}; keys as VOICE_STAGES)."""
    from segue.plot import plot_spectrogram

    name = f"continuation/{i:02d}"
    files = {"prompt": f"{name}_prompt.wav", "continuation": f"{name}_continuation.wav"}
    sounds = {"prompt": prompt, "continuation": full}
    if len(audio) > len(prompt):
        files["original"] = f"{name}_original.wav"
        sounds["original"] = audio
    for key, wav in stages.items():
        files[key] = f"{name}_{key}.wav"
        sounds[key] = np.concatenate([prompt, wav])
    titles = {"original": "original (real audio after the line)", **VOICE_STAGES}
    for key, wav in list(files.items()):
        audio_io.save(out / wav, sounds[key], rate)
        png = wav.removesuffix(".wav") + ".png"
        boundary = None if key == "prompt" else prompt_s
        title = titles.get(key, key)
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
        and _is_english(e)
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
        resynthesis = model.resynthesize(
            x, seed=seed + i, progress=False, acoustic=settings.acoustic
        )
        sounds = {
            "original": audio,
            "codec": _codec_round_trip(model, x),
            "semantic": _fit(resynthesis[0], len(audio)),
        }
        for levels in settings.keep_levels:  # which level's generation loses the words
            kept = model.resynthesize(
                x, seed=seed + i, progress=False, acoustic=settings.acoustic, keep_levels=levels
            )
            sounds[kept_key(levels)] = _fit(kept[0], len(audio))
        text = str(entry.extra["text"])
        heard = {key: transcriber.transcribe(wav, rate) for key, wav in sounds.items()}
        reference = normalize_text(text)
        row = ResynthesisRow(
            path=entry.path,
            group=entry.group,
            text=text,
            transcripts=heard,
            wer={k: wer([reference], [normalize_text(h)]) for k, h in heard.items()},
            recall={k: word_recall([reference], [normalize_text(h)]) for k, h in heard.items()},
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
    for key in rows[0].transcripts:  # SYSTEMS, then the kept levels
        hyps = [normalize_text(r.transcripts[key]) for r in rows]
        part.wer[key] = wer(refs, hyps)
        part.cer[key] = cer(refs, hyps)
        part.recall[key] = word_recall(refs, hyps)
    return part, skipped


def _write_resynthesis(out, i, entry, sounds, rate) -> dict[str, str]:
    from segue.plot import plot_spectrogram

    files = {}
    for key, wav in sounds.items():
        name = f"resynthesis/{i:02d}_{key}"
        audio_io.save(out / f"{name}.wav", wav, rate)
        plot_spectrogram(wav, rate, out / f"{name}.png", title=f"{entry.group}: {system_name(key)}")
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


def _codec_round_trip(model, x: torch.Tensor) -> np.ndarray:
    """Audio [1, T] encoded and decoded by the model's codec at its levels: [T] float32."""
    codes = model.codec.encode(x)[:, : model.n_levels]
    return _fit(model.codec.decode(codes)[0], x.shape[-1])


def _fit(audio: torch.Tensor, length: int) -> np.ndarray:
    """[T'] tensor -> [length] float32 array (cut, or zero-padded)."""
    x = audio.float().cpu().numpy()[:length]
    return np.pad(x, (0, length - len(x))).astype(np.float32)
