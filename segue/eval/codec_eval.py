"""`segue codec eval`: reconstruction quality of an acoustic tokenizer on a manifest split."""

from __future__ import annotations

import itertools
import math

import torch
from tqdm.auto import tqdm

from segue import audio as audio_io
from segue.data.manifest import Manifest
from segue.errors import InputError
from segue.eval.asr import Transcriber, normalize_text, wer, word_recall
from segue.eval.metrics import all_metrics, mean_metrics


def codebook_stats(codes: list[torch.Tensor], codebook_size: int) -> dict[str, list[float]]:
    """Per level over all frames of [Q, F] code arrays: share of codes used, and perplexity."""
    stacked = torch.cat(codes, dim=1)  # [Q, all frames]
    usage, ppl = [], []
    for level in stacked:
        counts = torch.bincount(level, minlength=codebook_size).double()
        p = counts / counts.sum()
        usage.append(float((counts > 0).double().mean()))
        ppl.append(float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())))
    return {"usage": usage, "perplexity": ppl}


def _english_text(entry, max_seconds: float) -> str | None:
    """The normalised English transcript of a file that fits in `max_seconds` (else None: a cut
    file would be scored against words it no longer holds)."""
    text = normalize_text(str(entry.extra.get("text") or ""))
    language = str(entry.extra.get("language") or "en")
    if not text or not language.startswith("en") or entry.duration > max_seconds:
        return None
    return text


def _asr_report(transcripts: dict[str, list[str]]) -> dict:
    """WER and word recall of originals, round trips and coarse-only round trips against the
    references."""
    refs = transcripts.pop("reference")
    report: dict = {"files": len(refs)}
    for name, hyps in transcripts.items():
        report[f"wer_{name}"] = wer(refs, hyps)
        report[f"recall_{name}"] = word_recall(refs, hyps)
    if report.get("wer_original"):
        for name in ("codec", "coarse"):
            report[f"wer_{name}_ratio"] = report[f"wer_{name}"] / report["wer_original"]
    return report


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
) -> dict:
    """Encode/decode the first `max_seconds` of each file and compare with the original.

    `codec` is any acoustic tokenizer (segue `Codec` or `PretrainedCodec`); `per_voice` keeps
    at most that many files of each voice (group), then `max_files` the first of those. With a
    `transcriber`, English files with a transcript are also recognised three times (original,
    round trip, round trip through the coarse levels alone) for WER and word recall.
    Returns {"files", "levels", "bitrate", "metrics" (means), "rows" (per file), "codebooks"},
    plus "asr" with a transcriber: {"files", "wer_*" and "recall_*" of "original", "codec" and
    "coarse", and "wer_codec_ratio", "wer_coarse_ratio" against the original's WER}.
    """
    entries = spread_over_voices(manifest.entries, per_voice)
    entries = entries[:max_files] if max_files else entries
    if not entries:
        raise InputError("no files to evaluate (empty manifest or split)")
    rows, all_codes = [], []
    transcripts: dict[str, list[str]] = {
        name: [] for name in ("reference", "original", "codec", "coarse")
    }
    device = _device_of(codec)  # the audio goes there, the results come back to the CPU
    for entry in tqdm(entries, desc="codec eval", unit="file", dynamic_ncols=True):
        original = audio_io.load(manifest.resolve(entry), codec.sample_rate, duration=max_seconds)
        codes = codec.encode(torch.from_numpy(original)[None].to(device), n_quantizers)
        decoded = codec.decode(codes)[0, : len(original)].float().cpu().numpy()
        rows.append({**all_metrics(decoded, original, codec.sample_rate), "path": entry.path})
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
    report = {
        "files": len(rows),
        "levels": levels,
        "bitrate": levels * math.log2(codec.codebook_size) * codec.frame_rate,
        "metrics": mean_metrics([{k: v for k, v in r.items() if k != "path"} for r in rows]),
        "rows": rows,
        "codebooks": codebook_stats(all_codes, codec.codebook_size),
    }
    if transcriber is not None:
        report["asr"] = _asr_report(transcripts) if transcripts["reference"] else {"files": 0}
    return report


def format_report(report: dict) -> str:
    """The mean metrics as a small table, plus codebook usage per level."""
    lines = [f"{report['files']} files, {report['levels']} levels, {report['bitrate']:.0f} bit/s"]
    for key, value in report["metrics"].items():
        shown = "n/a (package not installed)" if value is None else f"{value:.3f}"
        lines.append(f"  {key:>13}: {shown}")
    asr = report.get("asr")
    if asr and asr["files"]:
        lines.append(
            f"  WER ({asr['files']} English files): original {asr['wer_original']:.1%}, "
            f"round trip {asr['wer_codec']:.1%}, coarse levels alone {asr['wer_coarse']:.1%}"
        )
        lines.append(
            f"  word recall: original {asr['recall_original']:.1%}, round trip "
            f"{asr['recall_codec']:.1%}, coarse levels alone {asr['recall_coarse']:.1%}"
        )
    elif asr is not None:
        lines.append("  WER: no English file with a transcript that fits --max-seconds")
    ppl = ", ".join(f"{p:.0f}" for p in report["codebooks"]["perplexity"])
    use = ", ".join(f"{u:.0%}" for u in report["codebooks"]["usage"])
    lines.append(f"  codebook perplexity per level: {ppl}")
    lines.append(f"  codebook usage per level: {use}")
    return "\n".join(lines)
