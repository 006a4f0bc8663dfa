"""Our three LMs vs. audiolm-pytorch's Semantic/Coarse/FineTransformer of matched size, one run.

    bash bench/setup_audiolm_pytorch.sh          # once: .bench/audiolm-venv
    .venv/bin/python bench/lm_vs_audiolm_pytorch.py --out runs/bench-lm/results.json
    .venv/bin/python bench/lm_vs_audiolm_pytorch.py --quick      # a tiny check of the harness

Method:
- Models (`--size`): `anchor` (default), d 256, 6 layers, 4 heads of 64, the size the anchor in
  ../shared/README.md was measured at; `tiny`, our `tiny` preset as shipped (d 192, 4 layers, 3
  heads of 64). Ours shares one key/value head (the preset's); theirs gets the same dim, depth,
  heads and head size (its defaults otherwise: GEGLU, relative position bias, 4 residual streams,
  one shared key/value head); parameter counts are printed.
  Token spaces: a 512-code semantic tokenizer at 25 Hz, 8 x 1024 acoustic codes at 50 Hz,
  3 coarse (the tiny codec).
- Each measurement runs in its own process (ours: this script with --worker; theirs:
  bench/lm_audiolm_pytorch_worker.py in its venv), with the same number of torch threads.
- Sampling: tokens generated per second, KV cache on both sides, batch 1 and 8, the fastest of
  `--repeats` generations after a short warm-up one (other load on the machine only slows a run
  down): the semantic stage 250 tokens (10 s; `--semantic-seconds`) from nothing, the coarse stage
  250 frames x 3 levels (5 s) from 125 semantic tokens, the fine stage 200 frames x 5 levels
  (4 s) from coarse codes (the lengths the anchor in ../shared/README.md was measured at). Both
  sample with temperature 1 and top-k keeping 10 % of the legal logits (theirs by default). EOS
  is kept from ending sequences (ours: `eos=False`; theirs: its EOS logit bias set to -1e4).
  Ours runs through the stage functions, with the tiny windows (coarse 4 s, sliding; fine 2 s:
  1 s new, 1 s previous), so re-prefilling a window is included in our time.
- Training: tokens per second (input tokens of the batch) of forward + backward + AdamW, batch 8,
  from the median time of `--train-steps` steps after `--warmup` steps, on sequences of a tiny
  window: semantic 250 tokens, coarse 100 semantic + 200 frames x 3, fine 100 frames x 8.
- Peak memory: the process's peak RSS minus its RSS after model construction (and the absolute
  peak), Linux `ru_maxrss`.
- FLOP/s: our training FLOPs (6 N per token for the N weights that take part in matmuls, plus
  12 x layers x d x T per token for attention), as a fraction of this machine's fp32 matmul peak
  (2048 x 2048 `torch.mm`, same threads) measured in the same run.

Prints one table and the ratios ours / theirs; writes all numbers to --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THEIR_PYTHON = ROOT / ".bench/audiolm-venv/bin/python"
THEIR_WORKER = ROOT / "bench/lm_audiolm_pytorch_worker.py"
STAGES = ("semantic", "coarse", "fine")
SIZES = {  # transformer sizes both sides are built at (see --size)
    "anchor": {"dim": 256, "depth": 6, "heads": 4},
    "tiny": {"dim": 192, "depth": 4, "heads": 3},
}


# ---------------------------------------------------------------- our side (worker process)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _our_lm(spec: dict):
    from segue.lm.config import stage_preset
    from segue.lm.stages import StageLM

    # The semantic window covers the whole sampling (theirs has no window): 10 s in `tiny`, the
    # audiolm preset's 30 s with --semantic-seconds 30.
    window = {"window_seconds": max(10.0, spec["semantic_tokens"] / 25)}
    stage = stage_preset(
        "tiny",
        spec["stage"],
        **(window if spec["stage"] == "semantic" else {}),
        semantic_vocab=spec["semantic_vocab"],
        acoustic_vocab=spec["acoustic_vocab"],
        n_coarse=spec["n_coarse"],
        n_levels=spec["levels"],
        temperature=1.0,
    )
    lm = StageLM.random(
        stage,
        "tiny",
        seed=spec["seed"],
        d_model=spec["dim"],
        n_layer=spec["depth"],
        n_head=spec["heads"],
        dropout=0.0,
    )
    if spec.get("half_weights"):  # float16 values, as a bundle saved in half precision holds
        import torch

        with torch.no_grad():
            for param in lm.model.parameters():
                param.copy_(param.half().float())
    return lm


def _our_train(spec: dict, lm) -> tuple[int, float, float]:
    """(tokens, seconds, FLOPs) of the timed training steps."""
    import torch

    from segue.lm.data import IGNORE

    layout, model, b = lm.layout, lm.model, spec["batch"]
    gen = torch.Generator().manual_seed(spec["seed"])
    if spec["stage"] == "semantic":
        codes = torch.randint(0, layout.n_codes, (b, layout.window), generator=gen)
        seqs = [layout.sequence(row, bos=True, eos=False) for row in codes]
    elif spec["stage"] == "coarse":
        sem = torch.randint(0, layout.semantic_vocab, (b, layout.window), generator=gen)
        ac = torch.randint(0, layout.acoustic_vocab, (b, layout.n_target_levels, layout.frames),
                           generator=gen)  # fmt: skip
        seqs = [layout.sequence(s, a, eos=False) for s, a in zip(sem, ac)]
    else:
        levels = layout.n_coarse + layout.n_target_levels
        ac = torch.randint(0, layout.acoustic_vocab, (b, levels, layout.window), generator=gen)
        seqs = [layout.sequence(a[: layout.n_coarse], a[layout.n_coarse :], eos=False) for a in ac]
    seq = torch.stack(seqs)
    inputs, target = seq[:, :-1], seq[:, 1:].clone()
    target[:, : max(0, layout.prefix_length - 1)] = IGNORE
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    times = []
    for _ in range(spec["warmup"] + spec["steps"]):
        start = time.perf_counter()
        loss = model(inputs, target).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    elapsed = statistics.median(times[spec["warmup"] :])
    tokens = inputs.numel()
    c = model.config
    matmul_params = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight")
                        and p.ndim == 2 and not n.startswith("embed"))  # fmt: skip
    per_token = 6 * matmul_params + 12 * c.n_layer * c.d_model * inputs.shape[1]
    return tokens, elapsed, float(per_token * tokens)


def _our_sample(spec: dict, lm) -> tuple[int, float]:
    import torch

    from segue.lm.stages import coarse_generate, fine_generate, semantic_continue

    gen = torch.Generator().manual_seed(spec["seed"])
    b, layout, stage = spec["batch"], lm.layout, spec["stage"]
    if stage == "semantic":
        k = math.ceil(0.1 * (layout.n_codes + 1))
    else:
        k = math.ceil(0.1 * (layout.acoustic_vocab + 1))
    semantic = torch.randint(0, spec["semantic_vocab"], (b, spec["semantic_tokens"]), generator=gen)
    coarse = torch.randint(0, spec["acoustic_vocab"], (b, spec["n_coarse"], spec["frames"]),
                           generator=gen)  # fmt: skip

    def run(scale: float) -> int:
        if stage == "semantic":
            n = max(2, round(spec["semantic_tokens"] * scale))
            out = semantic_continue(lm, None, n, batch_size=b, eos=False, top_k=k, generator=gen)
            return out.tokens.numel()
        n = max(2, round(spec["frames"] * scale))
        if stage == "coarse":
            out = coarse_generate(
                lm, semantic[:, : (n + 1) // 2], n_frames=n, top_k=k, generator=gen
            )
            return out.numel()
        out = fine_generate(lm, coarse[:, :, :n], top_k=k, generator=gen)
        return out.numel() - coarse[:, :, :n].numel()

    run(0.05)
    best = None
    for _ in range(spec.get("repeats", 1)):  # the fastest run: load on the machine only slows
        start = time.perf_counter()
        tokens = run(1.0)
        seconds = time.perf_counter() - start
        best = seconds if best is None else min(best, seconds)
    return tokens, best


def _matmul_peak(spec: dict) -> dict:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < spec.get("seconds", 2.0):
        torch.mm(a, b)
        n += 1
    seconds = time.perf_counter() - start
    return {"flops_per_s": 2 * 2048**3 * n / seconds}


def worker(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    if spec["mode"] == "peak":
        return _matmul_peak(spec)
    lm = _our_lm(spec)
    base = _rss_mb()
    result = {"params": lm.model.num_params()}
    if spec["mode"] == "train":
        tokens, seconds, flops = _our_train(spec, lm)
        result["flops_per_s"] = flops / seconds
    else:
        tokens, seconds = _our_sample(spec, lm)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**result, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "peak_rss_mb": peak, "base_rss_mb": base}  # fmt: skip


# ---------------------------------------------------------------- the comparison


def _run(command: list[str], timeout: float) -> dict:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{command[1]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def measure(side: str, spec: dict, timeout: float) -> dict:
    if side == "ours":
        return _run([sys.executable, __file__, "--worker", json.dumps(spec)], timeout)
    return _run([str(THEIR_PYTHON), str(THEIR_WORKER), json.dumps(spec)], timeout)


def specs(args) -> list[dict]:
    base = {
        "threads": args.threads,
        "half_weights": args.half_weights,
        "seed": 0,
        **SIZES[args.size],
        "semantic_vocab": 512,
        "acoustic_vocab": 1024,
        "n_coarse": 3,
        "levels": 8,
    }
    q = 0.1 if args.quick else 1.0
    semantic = round(25 * args.semantic_seconds * q)
    sample_len = {
        "semantic": {"semantic_tokens": semantic, "frames": 0},
        "coarse": {"semantic_tokens": (round(250 * q) + 1) // 2, "frames": round(250 * q)},
        "fine": {"semantic_tokens": 0, "frames": round(200 * q)},
    }
    train_len = {  # our tiny windows; theirs gets the same token counts
        "semantic": {"semantic_tokens": 250, "frames": 0},
        "coarse": {"semantic_tokens": 100, "frames": 200},
        "fine": {"semantic_tokens": 0, "frames": 100},
    }
    out = []
    for stage in args.stages:
        if "train" in args.modes:
            out.append({**base, **train_len[stage], "stage": stage, "mode": "train",
                        "batch": args.train_batch, "steps": 1 if args.quick else args.train_steps,
                        "warmup": 1 if args.quick else args.warmup})  # fmt: skip
        for batch in args.batches if "sample" in args.modes else []:
            out.append({**base, **sample_len[stage], "stage": stage, "mode": "sample",
                        "batch": batch, "repeats": 1 if args.quick else args.repeats})  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides")
    parser.add_argument(
        "--size",
        choices=sorted(SIZES),
        default="anchor",
        help="anchor: d 256 x 6 layers (the shared README's anchor); tiny: our tiny preset",
    )
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument(
        "--modes", nargs="+", default=["train", "sample"], choices=["train", "sample"]
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=2, help="timed generations, fastest kept")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600.0, help="per measurement")
    parser.add_argument(
        "--semantic-seconds",
        type=float,
        default=10.0,
        help="semantic sampling length in seconds of audio (25 tokens/s; the audiolm preset's "
        "semantic context is 30 s)",
    )
    parser.add_argument(
        "--half-weights",
        action="store_true",
        help="round our weights to float16 values, as the shipped bundle stores them (the fused "
        "batch-1 step then reads them as float16: the same numbers, half the bytes)",
    )
    parser.add_argument("--quick", action="store_true", help="10 %% lengths, 1 step: a smoke test")
    parser.add_argument("--out", type=Path, default=None, help="results JSON")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if not THEIR_PYTHON.is_file():
        sys.exit(f"{THEIR_PYTHON} missing: run bash bench/setup_audiolm_pytorch.sh first")
    peak = measure("ours", {"mode": "peak", "threads": args.threads}, args.timeout)
    print(f"fp32 matmul peak, {args.threads} thread(s): {peak['flops_per_s'] / 1e9:.1f} GFLOP/s")
    rows = []
    for spec in specs(args):
        row = {"spec": spec}
        for side in ("ours", "theirs"):
            row[side] = measure(side, spec, args.timeout)
        rows.append(row)
        ours, theirs = row["ours"], row["theirs"]
        a, b = ours["tokens_per_s"], theirs["tokens_per_s"]
        print(f"{spec['stage']:8s} {spec['mode']:6s} batch {spec['batch']}: "
              f"ours {a:8.1f} tok/s, theirs {b:8.1f} tok/s, x{a / b:.1f}", flush=True)  # fmt: skip
    print()
    header = (f"{'stage':8s} {'mode':6s} {'batch':>5s} {'ours tok/s':>11s} {'theirs tok/s':>13s} "
              f"{'ratio':>6s} {'ours MB':>8s} {'theirs MB':>9s}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for row in rows:
        s, ours, theirs = row["spec"], row["ours"], row["theirs"]
        mem = [r["peak_rss_mb"] - r["base_rss_mb"] for r in (ours, theirs)]
        a, b = ours["tokens_per_s"], theirs["tokens_per_s"]
        print(f"{s['stage']:8s} {s['mode']:6s} {s['batch']:5d} {a:11.1f} {b:13.1f} "
              f"{a / b:5.1f}x {mem[0]:8.0f} {mem[1]:9.0f}")  # fmt: skip
    print("(MB: peak RSS above the RSS after model construction)")
    for row in rows:
        if row["spec"]["mode"] == "train" and peak:
            fraction = row["ours"]["flops_per_s"] / peak["flops_per_s"]
            print(f"ours {row['spec']['stage']:8s} training: "
                  f"{row['ours']['flops_per_s'] / 1e9:6.1f} GFLOP/s = {100 * fraction:4.1f} % "
                  f"of the matmul peak")  # fmt: skip
    params = {r["spec"]["stage"]: (r["ours"]["params"], r["theirs"]["params"]) for r in rows}
    for stage, (a, b) in params.items():
        print(f"params {stage:8s}: ours {a / 1e6:.2f} M, theirs {b / 1e6:.2f} M")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"matmul_peak": peak, "rows": rows}, indent=1) + "\n")
        print(f"-> {args.out}")


if __name__ == "__main__":
    main()
