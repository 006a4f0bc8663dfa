"""End-to-end evaluation of an AudioLM bundle on held-out voices, as in the AudioLM paper, small.

    report = evaluate_e2e(model, manifest, split="test", n_prompts=8, out_dir="eval/e2e")
    print(format_e2e_report(report))

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
the AudioLM examples page) and `report.json`.
"""

from __future__ import annotations

import html
import json
import math
import os
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from segue import audio as audio_io
from segue.acoustic import PATHS
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


def evaluate_e2e(
    model,
    manifest: Manifest | str | os.PathLike,
    *,
    split: str | None = "test",
    n_prompts: int = 8,
    prompt_seconds: float = 3.0,
    continuation_seconds: float = 4.0,
    n_resynth: int = 8,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    n_reference_pairs: int = 32,
    max_resynth_seconds: float = 20.0,
    speaker: SpeakerEncoder | None = None,
    transcriber: Transcriber | None = None,
    acoustic: str = "ar",
) -> dict[str, Any]:
    """Continuations and resyntheses of a manifest split by an `AudioLM`; returns the report.

    Report: {"split", "settings", "model", "continuation" (None when n_prompts is 0),
    "resynthesis" (None when n_resynth is 0), "skipped" [{"path", "reason"}], "seconds"}; see
    `format_e2e_report` for what the numbers are. Files that cannot be read, or are silent, are
    skipped (and listed). speaker / transcriber: loaded encoders to reuse (default: new ones);
    speaker may be any encoder with `embed(audio, rate)` and a `label`, e.g. `ChromaEncoder`
    (pitch classes) for music.
    acoustic: the model's acoustic path, "ar" (coarse + fine LMs) or "soundstorm"; the same
    seed gives the same prompts and files, so two reports compare the paths.
    """
    started = time.perf_counter()
    manifest = _split(manifest, split)
    if not manifest.entries:
        raise InputError(f"no files in the {split!r} split")
    if not (prompt_seconds > 0 and continuation_seconds > 0):
        raise InputError("prompt and continuation seconds must be > 0")
    if n_prompts and prompt_seconds >= model.max_prompt_seconds:
        raise InputError(
            f"prompt of {prompt_seconds:g} s: this model takes prompts under "
            f"{model.max_prompt_seconds:.2f} s (its semantic context)"
        )
    out = None if out_dir is None else Path(out_dir)
    speaker = speaker or SpeakerEncoder()
    transcriber = transcriber or Transcriber(threads=torch.get_num_threads())
    skipped: list[dict[str, str]] = []
    settings = {
        "n_prompts": n_prompts,
        "prompt_seconds": prompt_seconds,
        "continuation_seconds": continuation_seconds,
        "n_resynth": n_resynth,
        "seed": seed,
        "n_reference_pairs": n_reference_pairs,
        "max_resynth_seconds": max_resynth_seconds,
        "acoustic": acoustic,
        "similarity": getattr(speaker, "label", SpeakerEncoder.label),
    }
    report: dict[str, Any] = {
        "split": split,
        "settings": settings,
        "model": dict(model.info),
        "sample_rate": model.sample_rate,
    }
    with torch.inference_mode():
        report["continuation"] = (
            _continuations(
                model,
                manifest,
                settings,
                speaker,
                skipped,
                out,
                progress,
            )
            if n_prompts > 0
            else None
        )
        report["resynthesis"] = (
            _resyntheses(model, manifest, settings, transcriber, skipped, out, progress)
            if n_resynth > 0
            else None
        )
    report["skipped"] = skipped
    report["seconds"] = round(time.perf_counter() - started, 2)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "index.html").write_text(listening_page(report), encoding="utf-8")
        (out / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


# ---- continuation


def _continuations(model, manifest, settings, speaker, skipped, out, progress) -> dict[str, Any]:
    """Continue up to n_prompts prompts; speaker similarities against prompts and real audio."""
    rate, seed = model.sample_rate, settings["seed"]
    prompt_s, new_s = settings["prompt_seconds"], settings["continuation_seconds"]
    length = round(prompt_s * rate)
    usable = [e for e in manifest.entries if e.duration >= prompt_s - 1e-6]
    if not usable:
        raise InputError(f"no file of the split is {prompt_s:g} s long (the prompt length)")
    rows, prompts, generated = [], [], []
    bar = tqdm(total=settings["n_prompts"], desc="continuations", disable=not progress)
    for entry in round_robin(usable, seed):
        if len(rows) >= settings["n_prompts"]:
            break
        audio = _load(manifest, entry, rate, prompt_s + new_s, skipped)
        if audio is None:
            continue
        prompt = audio[:length]
        if len(prompt) < length:
            skipped.append({"path": entry.path, "reason": "shorter than the prompt"})
            continue
        i = len(rows)
        full = (
            model.continue_(
                prompt, new_s, seed=seed + i, progress=False, acoustic=settings["acoustic"]
            )[0]
            .float()
            .cpu()
        )
        full = full.numpy()
        new = full[length:]
        e_prompt, e_new = speaker.embed(prompt, rate), speaker.embed(new, rate)
        real = audio[length:]
        has_real = len(real) >= MIN_REAL_SECONDS * rate and np.abs(real).max() > MIN_PEAK
        row = {
            "path": entry.path,
            "group": entry.group,
            "text": entry.extra.get("text"),
            "similarity": cosine(e_prompt, e_new),
            "real_similarity": cosine(e_prompt, speaker.embed(real, rate)) if has_real else None,
        }
        if out is not None:
            row["files"] = _write_continuation(out, i, entry, prompt, full, audio, rate, prompt_s)
        rows.append(row)
        prompts.append(e_prompt)
        generated.append(e_new)
        bar.update()
    bar.close()
    if not rows:
        raise InputError("no usable prompt in the split (all unreadable or silent)")
    # sim[i, j]: continuation i against prompt j.
    sim = np.array([[cosine(g, p) for p in prompts] for g in generated])
    groups = [r["group"] for r in rows]
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
        settings["n_reference_pairs"],
        seed,
        encoder=speaker,
        seconds=(prompt_s, new_s),
    )
    return {
        "n": len(rows),
        "voices": voices,
        "similarity": stats([r["similarity"] for r in rows]),
        "real_similarity": stats([r["real_similarity"] for r in rows]),
        "reference": {
            "same_voice": stats(reference["same"]),
            "different_voice": stats(reference["different"]),
        },
        "verification": float(np.mean(wins)) if wins else None,
        "verification_pairs": len(wins),
        "closest_prompt_accuracy": float(np.mean(closest)) if voices > 1 else None,
        "chance": float(np.mean([groups.count(g) / len(groups) for g in groups])),
        "rows": rows,
    }


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


def _resyntheses(model, manifest, settings, transcriber, skipped, out, progress) -> dict | None:
    """Transcribe original, codec and semantic-token resyntheses of files that have a text."""
    rate, seed = model.sample_rate, settings["seed"]
    usable = [
        e
        for e in manifest.entries
        if normalize_text(str(e.extra.get("text") or ""))
        and e.duration <= settings["max_resynth_seconds"]
    ]
    if not usable:
        return None
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=settings["n_resynth"], desc="resynthesis", disable=not progress)
    for entry in round_robin(usable, seed):
        if len(rows) >= settings["n_resynth"]:
            break
        audio = _load(manifest, entry, rate, None, skipped)
        if audio is None:
            continue
        i = len(rows)
        x = torch.from_numpy(audio)[None].to(model.device)
        codes = model.codec.encode(x)[:, : model.n_levels]
        resynthesis = model.resynthesize(
            x, seed=seed + i, progress=False, acoustic=settings["acoustic"]
        )
        sounds = {
            "original": audio,
            "codec": _fit(model.codec.decode(codes)[0], len(audio)),
            "semantic": _fit(resynthesis[0], len(audio)),
        }
        text = str(entry.extra["text"])
        heard = {key: transcriber.transcribe(wav, rate) for key, wav in sounds.items()}
        reference = normalize_text(text)
        row = {
            "path": entry.path,
            "group": entry.group,
            "text": text,
            "transcripts": heard,
            "wer": {k: wer([reference], [normalize_text(h)]) for k, h in heard.items()},
        }
        if out is not None:
            row["files"] = _write_resynthesis(out, i, entry, sounds, rate)
        rows.append(row)
        bar.update()
    bar.close()
    if not rows:
        return None
    refs = [normalize_text(r["text"]) for r in rows]
    scores: dict[str, dict[str, float]] = {"wer": {}, "cer": {}}
    for key in SYSTEMS:
        hyps = [normalize_text(r["transcripts"][key]) for r in rows]
        scores["wer"][key] = wer(refs, hyps)
        scores["cer"][key] = cer(refs, hyps)
    return {"n": len(rows), **scores, "rows": rows}


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


def stats(values: list[float | None]) -> dict[str, float | int | None]:
    """{"mean", "std", "min", "max", "n"} of the values that are not None (None when none)."""
    kept = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not kept:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    array = np.array(kept)
    return {
        "mean": float(array.mean()),
        "std": float(array.std()),
        "min": float(array.min()),
        "max": float(array.max()),
        "n": len(kept),
    }


def _split(manifest: Manifest | str | os.PathLike, split: str | None) -> Manifest:
    if not isinstance(manifest, Manifest):
        return read_manifest(manifest, split=split)
    if split is None:
        return manifest
    if all(e.split is None for e in manifest.entries):
        raise ManifestError("the manifest has no split information (pass split=None)")
    return manifest.subset(split)


def _load(manifest, entry, rate, seconds, skipped) -> np.ndarray | None:
    """The first `seconds` of an entry at `rate` ([T] float32), or None (noted in skipped)."""
    try:
        audio = audio_io.load(manifest.resolve(entry), rate, duration=seconds)
    except audio_io.AudioError as error:
        skipped.append({"path": entry.path, "reason": str(error)})
        return None
    if float(np.abs(audio).max()) < MIN_PEAK:
        skipped.append({"path": entry.path, "reason": "silent"})
        return None
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


def format_e2e_report(report: dict[str, Any]) -> str:
    """The report as small plain-text tables (markdown-compatible)."""
    s = report["settings"]
    known = PATHS.get(s.get("acoustic", "ar"))
    path = known.label if known else "?"
    lines = [
        f"end-to-end evaluation, split {report['split']}, seed {s['seed']}, acoustic tokens by "
        f"{path} ({s.get('acoustic', 'ar')})"
    ]
    cont = report.get("continuation")
    if cont:
        lines += [
            "",
            f"{s.get('similarity', SpeakerEncoder.label)}: {cont['n']} prompts of "
            f"{s['prompt_seconds']:g} s from {cont['voices']} voices, continued by "
            f"{s['continuation_seconds']:g} s",
            "",
            "| compared with the prompt           |  mean |   std |   n |",
            "|------------------------------------|-------|-------|-----|",
        ]
        table = [
            ("model continuation", cont["similarity"]),
            ("real continuation (same file)", cont["real_similarity"]),
            ("real, same voice (another file)", cont["reference"]["same_voice"]),
            ("real, another voice", cont["reference"]["different_voice"]),
        ]
        for name, row in table:
            lines.append(
                f"| {name:<34} | {_num(row['mean']):>5} | {_num(row['std']):>5} | {row['n']:>3} |"
            )
        lines += [
            "",
            f"verification (closer to its own prompt than to another voice's): "
            f"{_pct(cont['verification'])} of {cont['verification_pairs']} pairs (chance 50%)",
            f"closest prompt is its own voice: {_pct(cont['closest_prompt_accuracy'])} "
            f"(chance {_pct(cont['chance'])})",
        ]
    res = report.get("resynthesis")
    if res:
        lines += [
            "",
            f"intelligibility (Whisper tiny.en, normalised text): {res['n']} files",
            "",
            "| audio                            |    WER |    CER |",
            "|----------------------------------|--------|--------|",
        ]
        for key, name in SYSTEMS.items():
            lines.append(
                f"| {name:<32} | {_pct(res['wer'][key]):>6} | {_pct(res['cer'][key]):>6} |"
            )
    elif "resynthesis" in report and s["n_resynth"]:
        lines += ["", "intelligibility: no readable file with a `text` field in the split"]
    if report.get("skipped"):
        lines += ["", f"skipped {len(report['skipped'])} file(s) (unreadable or silent)"]
    lines += ["", f"{report['seconds']:.0f} s"]
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


def listening_page(report: dict[str, Any]) -> str:
    """index.html: the summary, then tables of players and spectrograms (relative paths)."""
    s = report["settings"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>segue: end-to-end evaluation</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>segue: end-to-end evaluation</h1>",
        f"<pre>{html.escape(format_e2e_report(report))}</pre>",
    ]
    cont = report.get("continuation")
    if cont:
        parts += [
            f"<h2>Continuation ({s['prompt_seconds']:g} s prompt, "
            f"{s['continuation_seconds']:g} s generated)</h2>",
            "<p>The dashed line marks where the prompt ends. Original: the same file, as long.</p>",
            "<table><tr><th>voice</th><th>prompt</th><th>continuation</th><th>original</th></tr>",
        ]
        for row in cont["rows"]:
            files = row.get("files")
            similarity = f"similarity to the prompt {row['similarity']:.3f}"
            real = row["real_similarity"]
            parts.append(
                f'<tr><td class="text">{html.escape(row["group"])}<br>'
                f"<small>{html.escape(row['path'])}</small></td>"
                + _cell(files, "prompt")
                + _cell(files, "continuation", similarity)
                + _cell(files, "original", "" if real is None else f"similarity {real:.3f}")
                + "</tr>"
            )
        parts.append("</table>")
    res = report.get("resynthesis")
    if res:
        parts += [
            "<h2>Resynthesis (what Whisper heard under each player)</h2>",
            "<table><tr><th>text</th>"
            + "".join(f"<th>{html.escape(name)}</th>" for name in SYSTEMS.values())
            + "</tr>",
        ]
        for row in res["rows"]:
            files = row.get("files")
            cells = "".join(
                _cell(files, key, f"heard: {row['transcripts'][key]} (WER {_pct(row['wer'][key])})")
                for key in SYSTEMS
            )
            parts.append(
                f'<tr><td class="text">{html.escape(row["text"])}<br>'
                f"<small>{html.escape(row['group'])}</small></td>{cells}</tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
