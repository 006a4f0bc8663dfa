"""The end-to-end evaluation as text and as listening pages.

    print(format_e2e_report(report))          # small markdown-compatible tables
    listening_page(report)                    # index.html of one run (`evaluate_e2e` writes it)
    comparison_page({"TTS, AR": "eval/tts-ar", "real, AR": "eval/real-ar", ...}, "eval/page")

`comparison_page` puts several runs side by side (held-out sets, acoustic paths, bundles): one
summary table with a column per run, then, for each set of runs that continued the same
prompts (same manifest, split and seed), one row per prompt with every run's continuation.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from segue.acoustic import PATHS
from segue.errors import InputError
from segue.eval.e2e_report import (
    LEXICAL_KEYS,
    PITCH_KEYS,
    VOICE_STAGES,
    E2EReport,
    _as_report,
)
from segue.eval.lexicon import MIN_PROBABILITY, LexicalCount
from segue.eval.speaker import SpeakerEncoder


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _sampling_label(settings: dict[str, Any]) -> str:
    """'T 0.8' plus top-k / top-p when set."""
    parts = [f"T {settings.get('temperature')}"]
    parts += [f"{key.replace('_', '-')} {settings[key]}" for key in ("top_k", "top_p")
              if settings.get(key) is not None]  # fmt: skip
    return " ".join(parts)


def format_e2e_report(report: E2EReport | dict[str, Any]) -> str:
    """The report (or a parsed report.json) as small plain-text tables (markdown-compatible)."""
    report = _as_report(report)
    s = report.settings
    path = PATHS[s.acoustic].label
    lines = [
        f"end-to-end evaluation, split {report.split}, seed {s.seed}, acoustic tokens by "
        f"{path} ({s.acoustic})"
    ]
    if report.sampling:  # the LMs' settings (SoundStorm's own schedule is in its config)
        stages = [name for name in ("semantic", "coarse", "fine") if name in report.sampling]
        used = stages if s.acoustic == "ar" else stages[:1]
        lines.append("sampling: " + ", ".join(
            f"{name} {_sampling_label(report.sampling[name])}" for name in used
        ))  # fmt: skip
    cont = report.continuation
    if cont is not None:
        lines += [
            "",
            f"{s.similarity or SpeakerEncoder.label}: {cont.n} prompts of "
            f"{s.prompt_seconds:g} s from {cont.voices} voices, continued by "
            f"{s.continuation_seconds:g} s",
            "",
        ]
        table = [
            ("model continuation", cont.similarity),
            ("real continuation (same file)", cont.real_similarity),
            ("real, same voice (another file)", cont.same_voice),
            ("real, another voice", cont.different_voice),
        ]
        if cont.stages is not None:  # from the model towards real audio
            stages = [(VOICE_STAGES[k], cont.stages[k]) for k in reversed(VOICE_STAGES)]
            table[1:1] = stages
        width = max(len(name) for name, _ in (*table, ("compared with the prompt", None)))
        lines += [
            f"| {'compared with the prompt':<{width}} |  mean |   std |   n |",
            f"|{'-' * (width + 2)}|-------|-------|-----|",
        ]
        for name, row in table:
            lines.append(
                f"| {name:<{width}} | {_num(row.mean):>5} | {_num(row.std):>5} | {row.n:>3} |"
            )
        lines += [
            "",
            f"verification (closer to its own prompt than to another voice's): "
            f"{_pct(cont.verification)} of {cont.verification_pairs} pairs (chance 50%)",
            f"closest prompt is its own voice: {_pct(cont.closest_prompt_accuracy)} "
            f"(chance {_pct(cont.chance)})",
        ]
        if cont.own_prompt_over_training is not None:
            lines.append(
                f"closer to its own prompt than to every training voice: "
                f"{_pct(cont.own_prompt_over_training)} ({cont.training_voices} training voices; "
                f"real continuations: {_pct(cont.real_own_prompt_over_training)})"
            )
            for key, share in (cont.stages_over_training or {}).items():
                if share is not None:
                    lines.append(f"  the same for the {VOICE_STAGES[key]}: {_pct(share)}")
        pitch = cont.pitch_range or {}
        if pitch:
            lines.append(
                "pitch range, semitones (5th-95th percentile of voiced F0): prompt "
                + ", continuation ".join(
                    f"{_num(pitch[key].mean)} (n {pitch[key].n})" for key in PITCH_KEYS
                )
            )
        if cont.lexicality is not None:
            lines += [
                "",
                f"| Whisper's words ({sum(bool(r.lexical) for r in cont.rows)} English rows) "
                f"| words | "
                f"dictionary | dictionary, p >= {MIN_PROBABILITY:g} |",
                "|---------------------------------------|-------|------------|"
                "---------------------|",
            ]
            for key, name in LEXICAL_KEYS.items():
                count = cont.lexicality.get(key, LexicalCount())
                lines.append(
                    f"| {name:<37} | {count.words:>5} | {_pct(count.dictionary_share):>10} | "
                    f"{_pct(count.confident_share):>19} |"
                )
    res = report.resynthesis
    if res is not None:
        lines += [
            "",
            f"intelligibility (Whisper tiny.en, normalised text): {res.n} files",
            "",
            "| audio                            |    WER |    CER | word recall |",
            "|----------------------------------|--------|--------|-------------|",
        ]
        for key, name in res.systems.items():
            lines.append(
                f"| {name:<32} | {_pct(res.wer[key]):>6} | {_pct(res.cer[key]):>6} "
                f"| {_pct(res.recall.get(key)):>11} |"
            )
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
        stage_keys = [k for k in VOICE_STAGES if any(r.files and k in r.files for r in cont.rows)]
        parts += [
            f"<h2>Continuation ({s.prompt_seconds:g} s prompt, "
            f"{s.continuation_seconds:g} s generated)</h2>",
            "<p>The dashed line marks where the prompt ends. Original: the same file, as long.</p>",
            "<table><tr><th>voice</th><th>prompt</th><th>continuation</th><th>original</th>"
            + "".join(f"<th>{html.escape(VOICE_STAGES[key])}</th>" for key in stage_keys)
            + "</tr>",
        ]
        for row in cont.rows:
            similarity = f"similarity to the prompt {row.similarity:.3f}"
            if row.training_similarity is not None:
                similarity += (
                    f"; to the nearest training voice ({row.training_voice}) "
                    f"{row.training_similarity:.3f}"
                )
            if row.transcripts and "continuation" in row.transcripts:
                similarity += f"; heard: {row.transcripts['continuation']}"
            real = row.real_similarity
            parts.append(
                f'<tr><td class="text">{html.escape(row.group)}<br>'
                f"<small>{html.escape(row.path)}</small></td>"
                + _cell(row.files, "prompt")
                + _cell(row.files, "continuation", similarity)
                + _cell(row.files, "original", "" if real is None else f"similarity {real:.3f}")
                + "".join(
                    _cell(row.files, key, f"similarity {(row.stages or {}).get(key, 0.0):.3f}")
                    for key in stage_keys
                )
                + "</tr>"
            )
        parts.append("</table>")
    res = report.resynthesis
    if res is not None:
        parts += [
            "<h2>Resynthesis (what Whisper heard under each player)</h2>",
            "<table><tr><th>text</th>"
            + "".join(f"<th>{html.escape(name)}</th>" for name in res.systems.values())
            + "</tr>",
        ]
        for row in res.rows:
            cells = "".join(
                _cell(row.files, key, f"heard: {row.transcripts[key]} (WER {_pct(row.wer[key])})")
                for key in res.systems
            )
            parts.append(
                f'<tr><td class="text">{html.escape(row.text)}<br>'
                f"<small>{html.escape(row.group)}</small></td>{cells}</tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ---- several runs side by side


def _summary_rows(report: E2EReport) -> dict[str, str]:
    """The numbers a comparison shows for one run, by row name (absent: "-")."""
    rows: dict[str, str] = {}
    cont, res = report.continuation, report.resynthesis
    if cont is not None:
        rows["prompts (voices)"] = f"{cont.n} ({cont.voices})"
        rows["similarity to the prompt"] = _num(cont.similarity.mean)
        rows["real continuation (same file)"] = _num(cont.real_similarity.mean)
        for key, stats in (cont.stages or {}).items():
            rows[VOICE_STAGES[key]] = _num(stats.mean)
        rows["real, same voice / another voice"] = (
            f"{_num(cont.same_voice.mean)} / {_num(cont.different_voice.mean)}"
        )
        rows["verification (chance 50%)"] = _pct(cont.verification)
        rows["closer to own prompt than to every training voice"] = (
            "-"
            if cont.own_prompt_over_training is None
            else f"{_pct(cont.own_prompt_over_training)} of {cont.training_voices} voices "
            f"(real: {_pct(cont.real_own_prompt_over_training)})"
        )
        for key, name in LEXICAL_KEYS.items():
            count = (cont.lexicality or {}).get(key)
            if count is not None:
                rows[f"confident dictionary words: {name}"] = _pct(count.confident_share)
        for key in PITCH_KEYS:
            stats = (cont.pitch_range or {}).get(key)
            if stats is not None:
                rows[f"pitch range, {key} (semitones)"] = _num(stats.mean)
    if res is not None:
        for key, name in res.systems.items():
            rows[f"word recall: {name}"] = _pct(res.recall.get(key))
            rows[f"WER: {name}"] = _pct(res.wer.get(key))
    return rows


def _relative(folder: Path, files: dict[str, str] | None, root: Path) -> dict[str, str] | None:
    """A row's files, relative to `root` (where the comparison page is) instead of `folder`."""
    if not files:
        return None
    return {k: os.path.relpath(folder / v, root).replace(os.sep, "/") for k, v in files.items()}


def comparison_page(
    runs: dict[str, str | os.PathLike], out_dir: str | os.PathLike
) -> Path:
    """Write OUT/index.html comparing runs ({label: a folder `evaluate_e2e` wrote}); returns it.

    Audio is linked where each run wrote it (relative paths: keep the folders together)."""
    if not runs:
        raise InputError("nothing to compare: give at least one evaluation folder")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reports: dict[str, tuple[Path, E2EReport]] = {}
    for label, folder in runs.items():
        path = Path(folder) / "report.json"
        if not path.is_file():
            raise InputError(f"{folder}: no report.json (not a `segue eval e2e -o` folder)")
        reports[label] = (Path(folder), E2EReport.from_json(path.read_text(encoding="utf-8")))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>segue: evaluations side by side'
        f"</title><style>{_STYLE}</style></head><body>",
        "<h1>segue: end-to-end evaluations side by side</h1>",
    ]
    summaries = {label: _summary_rows(r) for label, (_, r) in reports.items()}
    names = list(dict.fromkeys(name for rows in summaries.values() for name in rows))
    parts.append(
        "<table><tr><th></th>"
        + "".join(
            f"<th>{html.escape(label)}<br><small>{html.escape(_describe(r))}</small></th>"
            for label, (_, r) in reports.items()
        )
        + "</tr>"
    )
    for name in names:
        cells = "".join(f"<td>{html.escape(summaries[k].get(name, '-'))}</td>" for k in reports)
        parts.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    parts.append("</table>")
    parts += _continuations_side_by_side(reports, out)
    parts += _resyntheses_side_by_side(reports, out)
    parts.append("</body></html>")
    page = out / "index.html"
    page.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return page


def _describe(report: E2EReport) -> str:
    s = report.settings
    name = report.model.get("name", "")
    return f"{name} split {report.split}, {PATHS[s.acoustic].label}, seed {s.seed}".strip()


def _same_files(reports, part: str) -> dict[tuple[str, ...], list[str]]:
    """{the files of a part's rows, in order: the labels of the runs with exactly those}."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for label, (_, report) in reports.items():
        if getattr(report, part) is not None:
            key = tuple(r.path for r in getattr(report, part).rows)
            groups.setdefault(key, []).append(label)
    return groups


def _continuations_side_by_side(reports, out: Path) -> list[str]:
    """One table per set of runs that continued the same prompts: a row per prompt."""
    parts = []
    for paths, labels in _same_files(reports, "continuation").items():
        first_folder, first = reports[labels[0]]
        s = first.settings
        parts += [
            f"<h2>Continuations ({s.prompt_seconds:g} s prompt, {s.continuation_seconds:g} s "
            f"generated): {html.escape(', '.join(labels))}</h2>",
            "<table><tr><th>voice</th><th>prompt</th>"
            + "".join(f"<th>{html.escape(label)}</th>" for label in labels)
            + "<th>original</th></tr>",
        ]
        for i, path in enumerate(paths):
            row0 = first.continuation.rows[i]
            files0 = _relative(first_folder, row0.files, out)
            cells = ""
            for label in labels:
                folder, report = reports[label]
                row = report.continuation.rows[i]
                note = f"similarity {row.similarity:.3f}"
                if row.training_similarity is not None:
                    note += f"; nearest training voice {row.training_similarity:.3f}"
                cells += _cell(_relative(folder, row.files, out), "continuation", note)
            parts.append(
                f'<tr><td class="text">{html.escape(row0.group)}<br>'
                f"<small>{html.escape(path)}</small></td>"
                + _cell(files0, "prompt")
                + cells
                + _cell(files0, "original")
                + "</tr>"
            )
        parts.append("</table>")
    return parts


def _resyntheses_side_by_side(reports, out: Path) -> list[str]:
    """One table per set of runs that resynthesized the same files: original, codec, and each
    run's resynthesis from semantic tokens."""
    parts = []
    for labels in _same_files(reports, "resynthesis").values():
        first_folder, first = reports[labels[0]]
        parts += [
            f"<h2>Resynthesis: {html.escape(', '.join(labels))}</h2>",
            "<table><tr><th>text</th><th>original</th><th>codec</th>"
            + "".join(f"<th>{html.escape(label)}: from semantic tokens</th>" for label in labels)
            + "</tr>",
        ]
        for i, row0 in enumerate(first.resynthesis.rows):
            files0 = _relative(first_folder, row0.files, out)
            cells = _cell(files0, "original", f"heard: {row0.transcripts['original']}")
            cells += _cell(files0, "codec", f"heard: {row0.transcripts['codec']}")
            for label in labels:
                folder, report = reports[label]
                row = report.resynthesis.rows[i]
                heard = f"heard: {row.transcripts['semantic']}"
                cells += _cell(_relative(folder, row.files, out), "semantic", heard)
            parts.append(
                f'<tr><td class="text">{html.escape(row0.text)}<br>'
                f"<small>{html.escape(row0.group)}</small></td>{cells}</tr>"
            )
        parts.append("</table>")
    return parts
