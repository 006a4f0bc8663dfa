"""Encode and decode real-time factor of our codec presets on CPU.

    .venv/bin/python bench/codec_rtf.py [--seconds 10] [--threads 2] [--repeats 5] [--json OUT]

Method: a codec per preset (`tiny`, `audiolm`) and decoder (`conv`, the baseline, and `istft`)
with random weights (speed does not depend on the
weights), fixed seed; the input is `--seconds` of white noise at the preset's sample rate, batch
1. After one untimed warm-up call, `Codec.encode` (audio -> all codebooks) and `Codec.decode`
(codes -> audio) are each timed `--repeats` times with torch's intra-op threads set to
`--threads`; RTF = median processing seconds / audio seconds (below 1: faster than real time).
"dec x" is the conv decoder's decode time over this row's (same preset, same job).
--baseline-code CHECKOUT first runs this same measurement with another checkout's code (e.g.
`git worktree add /tmp/base COMMIT`, its bench/codec_rtf.py, in a subprocess) and adds "vs base
enc" / "vs base dec": its encode / decode time over this code's, row by row, same job.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from segue.codec.config import preset
from segue.codec.model import Codec


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, decoder: str, seconds: float, repeats: int) -> dict:
    torch.manual_seed(0)
    config = preset(name, decoder=decoder)
    codec = Codec(config).eval()
    audio = 0.1 * torch.randn(1, round(seconds * config.sample_rate))
    codes = codec.encode(audio)
    encode = timed(lambda: codec.encode(audio), repeats)
    decode = timed(lambda: codec.decode(codes), repeats)
    return {
        "preset": name,
        "decoder": decoder,
        "params": sum(p.numel() for p in codec.parameters()),
        "bitrate": config.bitrate,
        "encode_s": encode,
        "decode_s": decode,
        "encode_rtf": encode / seconds,
        "decode_rtf": decode / seconds,
        "total_rtf": (encode + decode) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "audiolm"])
    parser.add_argument("--decoders", nargs="+", default=["conv", "istft"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--baseline-code", type=Path, default=None,
                        help="another checkout of segue, measured first with the same arguments")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    theirs = baseline_rows(args) if args.baseline_code else {}
    rows = []
    with torch.inference_mode():
        for name in args.presets:
            for decoder in args.decoders:
                print(f"timing {name}/{decoder} ({args.repeats} x encode + decode of "
                      f"{args.seconds:g} s)...")
                rows.append(measure(name, decoder, args.seconds, args.repeats))
    baseline = {r["preset"]: r["decode_s"] for r in rows if r["decoder"] == "conv"}
    head = ["preset", "decoder", "params", "bps", "encode s", "enc RTF", "decode s", "dec RTF",
            "total RTF", "dec x"] + (["vs base enc", "vs base dec"] if theirs else [])
    table = [head]
    for r in rows:
        table.append([r["preset"], r["decoder"], f"{r['params']:,}", f"{r['bitrate']:.0f}"])
        table[-1] += [f"{r[k]:.4f}" for k in ("encode_s", "encode_rtf", "decode_s", "decode_rtf")]
        table[-1].append(f"{r['total_rtf']:.4f}")
        base = baseline.get(r["preset"])
        table[-1].append(f"{base / r['decode_s']:.1f}" if base else "-")
        if theirs:
            old = theirs.get((r["preset"], r["decoder"]))
            table[-1] += [f"{old[k] / r[k]:.2f}x" if old else "-" for k in ("encode_s", "decode_s")]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    print(f"\nCPU, {args.threads} threads, {args.seconds:g} s of audio, median of {args.repeats}")
    for i, row in enumerate(table):
        print(" | ".join(c.rjust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"threads": args.threads, "seconds": args.seconds, "repeats": args.repeats}
        args.json.write_text(json.dumps({**meta, "rows": rows}, indent=1))


def baseline_rows(args: argparse.Namespace) -> dict[tuple[str, str], dict]:
    """(preset, decoder) -> row, measured by the baseline checkout's own codec_rtf.py."""
    root = args.baseline_code.resolve()
    script = root / "bench" / "codec_rtf.py"
    if not script.is_file():
        raise SystemExit(f"--baseline-code {root} has no bench/codec_rtf.py")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        command = [sys.executable, str(script), "--presets", *args.presets, "--decoders",
                   *args.decoders, "--seconds", str(args.seconds), "--threads", str(args.threads),
                   "--repeats", str(args.repeats), "--json", str(out)]
        print(f"baseline: {root} ...")
        subprocess.run(command, check=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
        rows = json.loads(out.read_text())["rows"]
    return {(r["preset"], r["decoder"]): r for r in rows}


if __name__ == "__main__":
    main()
