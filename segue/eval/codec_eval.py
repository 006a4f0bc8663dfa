"""`segue codec eval`: reconstruction quality of an acoustic tokenizer on a manifest split.

    report = evaluate_codec(codec, read_manifest("manifest.jsonl", split="valid"))
    print(format_report(report))  # report: a CodecReport; report.to_json() -> --json's file
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from segue import audio as audio_io
from segue.data.manifest import Manifest
from segue.errors import InputError
from segue.eval.asr import Transcriber, normalize_text, wer, word_recall
from segue.eval.metrics import all_metrics, mean_metrics

#: The three recognitions of each English file: the original, the round trip through all the
#: levels, and the round trip through the coarse levels alone.
ASR_SYSTEMS = ("original", "codec", "coarse")


@dataclass
class CodecRow:
    """One file's metrics (`segue.eval.metrics.all_metrics`: name -> value, None when the
    metric's package is missing)."""

    path: str
    metrics: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        """As report.json has a row: the metrics, then "path"."""
        return {**self.metrics, "path": self.path}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodecRow:
        return cls(data["path"], {k: v for k, v in data.items() if k != "path"})


@dataclass
class CodebookStats:
    """Per level (the report's `levels` of them), over all frames: the share of codes used and
    the perplexity of the codes' distribution."""

    usage: list[float]
    perplexity: list[float]


@dataclass
class AsrScores:
    """WER and word recall of each of ASR_SYSTEMS against the transcripts of `files` English
    files (all empty when there are none), and the WER of "codec" and "coarse" over the
    original's (absent when the original's WER is 0)."""

    files: int
    wer: dict[str, float] = dataclasses.field(default_factory=dict)
    recall: dict[str, float] = dataclasses.field(default_factory=dict)
    wer_ratio: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """report.json's flat form: {"files", "wer_<system>", "recall_<system>", ...,
        "wer_<system>_ratio"}."""
        data: dict[str, Any] = {"files": self.files}
        for name in self.wer:
            data[f"wer_{name}"] = self.wer[name]
            data[f"recall_{name}"] = self.recall[name]
        data.update({f"wer_{name}_ratio": r for name, r in self.wer_ratio.items()})
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AsrScores:
        scores = cls(data["files"])
        for key, value in data.items():
            if key.endswith("_ratio"):
                scores.wer_ratio[key.removeprefix("wer_").removesuffix("_ratio")] = value
            elif key.startswith("wer_"):
                scores.wer[key.removeprefix("wer_")] = value
            elif key.startswith("recall_"):
                scores.recall[key.removeprefix("recall_")] = value
        return scores


@dataclass
class CodecReport:
    """A codec evaluation: files, levels, bit rate, the mean of each metric over the files
    (None when unavailable), the per-file rows, codebook use per level, and with a transcriber
    the ASR scores. `to_json()` is the `--json` file: {"files", "levels", "bitrate", "metrics",
    "rows", "codebooks", and "asr" when there was a transcriber}."""

    levels: int
    bitrate: float
    metrics: dict[str, float | None]
    rows: list[CodecRow]
    codebooks: CodebookStats
    asr: AsrScores | None = None

    @property
    def files(self) -> int:
        """Files evaluated."""
        return len(self.rows)

    def to_dict(self, rows: bool = True) -> dict[str, Any]:
        """JSON-ready values, with the report's keys and nesting (without "rows" when not
        `rows`)."""
        data: dict[str, Any] = {
            "files": self.files,
            "levels": self.levels,
            "bitrate": self.bitrate,
            "metrics": dict(self.metrics),
            "rows": [row.to_dict() for row in self.rows],
            "codebooks": dataclasses.asdict(self.codebooks),
        }
        if not rows:
            del data["rows"]
        if self.asr is not None:
            data["asr"] = self.asr.to_dict()
        return data

    def to_json(self) -> str:
        """The report as indented JSON, with a final newline."""
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodecReport:
        """From `to_dict()`'s form (the `--json` file, parsed), rows included."""
        try:
            return cls(
                levels=data["levels"],
                bitrate=data["bitrate"],
                metrics=dict(data["metrics"]),
                rows=[CodecRow.from_dict(row) for row in data["rows"]],
                codebooks=CodebookStats(**data["codebooks"]),
                asr=AsrScores.from_dict(data["asr"]) if "asr" in data else None,
            )
        except (KeyError, TypeError) as error:
            raise InputError(f"not a codec evaluation report: {error!r}") from error

    @classmethod
    def from_json(cls, text: str) -> CodecReport:
        return cls.from_dict(json.loads(text))


def codebook_stats(codes: list[torch.Tensor], codebook_size: int) -> CodebookStats:
    """Per level over all frames of [Q, F] code arrays: share of codes used, and perplexity."""
    stacked = torch.cat(codes, dim=1)  # [Q, all frames]
    usage, ppl = [], []
    for level in stacked:
        counts = torch.bincount(level, minlength=codebook_size).double()
        p = counts / counts.sum()
        usage.append(float((counts > 0).double().mean()))
        ppl.append(float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())))
    return CodebookStats(usage=usage, perplexity=ppl)


def _english_text(entry, max_seconds: float) -> str | None:
    """The normalised English transcript of a file that fits in `max_seconds` (else None: a cut
    file would be scored against words it no longer holds)."""
    text = normalize_text(str(entry.extra.get("text") or ""))
    language = str(entry.extra.get("language") or "en")
    if not text or not language.startswith("en") or entry.duration > max_seconds:
        return None
    return text


def _asr_report(transcripts: dict[str, list[str]]) -> AsrScores:
    """WER and word recall of originals, round trips and coarse-only round trips against the
    references."""
    refs = transcripts["reference"]
    scores = AsrScores(len(refs))
    if not refs:
        return scores
    for name in ASR_SYSTEMS:
        scores.wer[name] = wer(refs, transcripts[name])
        scores.recall[name] = word_recall(refs, transcripts[name])
    if scores.wer["original"]:
        for name in ("codec", "coarse"):
            scores.wer_ratio[name] = scores.wer[name] / scores.wer["original"]
    return scores


def spread_over_voices(entries: list, per_voice: int | None) -> list:
    """At most `per_voice` files of each group (voice), in manifest order, taken round-robin
    over the groups, so that any prefix of the list (`--max-files`) spreads over the voices."""
    if per_voice is None:
        return list(entries)
    groups: dict[str, list] = {}
    for entry in entries:
        if len(group := groups.setdefault(entry.group, [])) < per_voice:
            group.append(entry)
    return [e for row in itertools.zip_longest(*groups.values()) for e in row if e is not None]


def _device_of(codec) -> torch.device:
    """Where a codec's weights are: its first parameter's device (CPU when it has none)."""
    for tensor in codec.parameters() if isinstance(codec, torch.nn.Module) else ():
        return tensor.device
    return torch.device("cpu")


def evaluate_codec(
    codec,
    manifest: Manifest,
    *,
    max_files: int | None = None,
    per_voice: int | None = None,
    max_seconds: float = 10.0,
    n_quantizers: int | None = None,
    transcriber: Transcriber | None = None,
) -> CodecReport:
    """Encode/decode the first `max_seconds` of each file and compare with the original.

    `codec` is any acoustic tokenizer (segue `Codec` or `PretrainedCodec`); `per_voice` keeps
    at most that many files of each voice (group), then `max_files` the first of those. With a
    `transcriber`, English files with a transcript are also recognised three times (original,
    round trip, round trip through the coarse levels alone) for WER and word recall.
    Returns a `CodecReport`: the mean metrics, the rows (per file), the codebooks' use, and with
    a transcriber `asr`, WER and word recall of "original", "codec" and "coarse", and the WER
    of "codec" and "coarse" over the original's.
    """
    entries = spread_over_voices(manifest.entries, per_voice)
    entries = entries[:max_files] if max_files else entries
    if not entries:
        raise InputError("no files to evaluate (empty manifest or split)")
    rows: list[CodecRow] = []
    all_codes = []
    transcripts: dict[str, list[str]] = {name: [] for name in ("reference", *ASR_SYSTEMS)}
    device = _device_of(codec)  # the audio goes there, the results come back to the CPU
    for entry in tqdm(entries, desc="codec eval", unit="file", dynamic_ncols=True):
        original = audio_io.load(manifest.resolve(entry), codec.sample_rate, duration=max_seconds)
        codes = codec.encode(torch.from_numpy(original)[None].to(device), n_quantizers)
        decoded = codec.decode(codes)[0, : len(original)].float().cpu().numpy()
        rows.append(CodecRow(entry.path, all_metrics(decoded, original, codec.sample_rate)))
        all_codes.append(codes[0].cpu())
        reference = _english_text(entry, max_seconds) if transcriber is not None else None
        if reference is not None:
            coarse = codec.decode(codes[:, : codec.n_coarse])[0, : len(original)]
            coarse = coarse.float().cpu().numpy()
            transcripts["reference"].append(reference)
            for name, audio in (("original", original), ("codec", decoded), ("coarse", coarse)):
                text = transcriber.transcribe(audio, codec.sample_rate)
                transcripts[name].append(normalize_text(text))
    levels = all_codes[0].shape[0]
    return CodecReport(
        levels=levels,
        bitrate=levels * math.log2(codec.codebook_size) * codec.frame_rate,
        metrics=mean_metrics([r.metrics for r in rows]),
        rows=rows,
        codebooks=codebook_stats(all_codes, codec.codebook_size),
        asr=None if transcriber is None else _asr_report(transcripts),
    )


def format_report(report: CodecReport | dict[str, Any]) -> str:
    """The mean metrics as a small table, plus codebook usage per level (of a report, or of its
    `to_dict()` form)."""
    if not isinstance(report, CodecReport):
        report = CodecReport.from_dict(report)
    lines = [f"{report.files} files, {report.levels} levels, {report.bitrate:.0f} bit/s"]
    for key, value in report.metrics.items():
        shown = "n/a (package not installed)" if value is None else f"{value:.3f}"
        lines.append(f"  {key:>13}: {shown}")
    asr = report.asr
    if asr is not None and asr.files:
        wer, recall = asr.wer, asr.recall
        lines.append(
            f"  WER ({asr.files} English files): original {wer['original']:.1%}, "
            f"round trip {wer['codec']:.1%}, coarse levels alone {wer['coarse']:.1%}"
        )
        lines.append(
            f"  word recall: original {recall['original']:.1%}, round trip "
            f"{recall['codec']:.1%}, coarse levels alone {recall['coarse']:.1%}"
        )
    elif asr is not None:
        lines.append("  WER: no English file with a transcript that fits --max-seconds")
    ppl = ", ".join(f"{p:.0f}" for p in report.codebooks.perplexity)
    use = ", ".join(f"{u:.0%}" for u in report.codebooks.usage)
    lines.append(f"  codebook perplexity per level: {ppl}")
    lines.append(f"  codebook usage per level: {use}")
    return "\n".join(lines)
