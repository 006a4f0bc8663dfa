"""`segue codec eval`: reconstruction quality of an acoustic tokenizer on a manifest split."""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from segue import audio as audio_io
from segue.data.manifest import Manifest
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


def evaluate_codec(
    codec,
    manifest: Manifest,
    *,
    max_files: int | None = None,
    max_seconds: float = 10.0,
    n_quantizers: int | None = None,
) -> dict:
    """Encode/decode the first `max_seconds` of each file and compare with the original.

    `codec` is any acoustic tokenizer (segue `Codec` or `PretrainedCodec`).
    Returns {"files", "levels", "bitrate", "metrics" (means), "rows" (per file), "codebooks"}.
    """
    entries = manifest.entries[:max_files] if max_files else manifest.entries
    if not entries:
        raise ValueError("no files to evaluate (empty manifest or split)")
    rows, all_codes = [], []
    for entry in tqdm(entries, desc="codec eval", unit="file", dynamic_ncols=True):
        original = audio_io.load(manifest.resolve(entry), codec.sample_rate, duration=max_seconds)
        codes = codec.encode(torch.from_numpy(original)[None], n_quantizers)
        decoded = codec.decode(codes)[0, : len(original)].float().numpy()
        rows.append({**all_metrics(decoded, original, codec.sample_rate), "path": entry.path})
        all_codes.append(codes[0])
    levels = all_codes[0].shape[0]
    return {
        "files": len(rows),
        "levels": levels,
        "bitrate": levels * math.log2(codec.codebook_size) * codec.frame_rate,
        "metrics": mean_metrics([{k: v for k, v in r.items() if k != "path"} for r in rows]),
        "rows": rows,
        "codebooks": codebook_stats(all_codes, codec.codebook_size),
    }


def format_report(report: dict) -> str:
    """The mean metrics as a small table, plus codebook usage per level."""
    lines = [f"{report['files']} files, {report['levels']} levels, {report['bitrate']:.0f} bit/s"]
    for key, value in report["metrics"].items():
        shown = "n/a (package not installed)" if value is None else f"{value:.3f}"
        lines.append(f"  {key:>13}: {shown}")
    ppl = ", ".join(f"{p:.0f}" for p in report["codebooks"]["perplexity"])
    use = ", ".join(f"{u:.0%}" for u in report["codebooks"]["usage"])
    lines.append(f"  codebook perplexity per level: {ppl}")
    lines.append(f"  codebook usage per level: {use}")
    return "\n".join(lines)
