"""Sampling speed of the `tiny` (or `audiolm`) stage presets, random weights, on this machine.

    .venv/bin/python bench/lm_speed.py [--preset tiny] [--seconds 10] [--threads 1]
        [--batches 1 8] [--half-values] [--device cpu|cuda]

Prints tokens/s of each stage at each batch (default 1 and 8) and, for batches > 1, the ratio
of total tokens/s to batch 1's in the same run; and the wall time to generate every token of
`--seconds` of audio (semantic -> coarse -> fine, the stages' own windows). The token spaces are
those of the tiny codec (8 x 1024 codes, 3 coarse, 50 Hz) and a 512-cluster semantic tokenizer
(25 Hz) unless told otherwise. `--half-values` rounds the weights to float16 values, as in the
shipped bundle (the fused C step then reads them as float16). `--device cuda` times the
PyTorch step on a GPU (each stage's time ends with a CUDA synchronize).
"""

from __future__ import annotations

import argparse
import time

import torch

from segue.lm.config import stage_preset
from segue.lm.stages import StageLM, coarse_generate, fine_generate, semantic_continue


def build(preset: str, stage: str, args) -> StageLM:
    config = stage_preset(
        preset,
        stage,
        semantic_vocab=args.semantic_vocab,
        acoustic_vocab=args.acoustic_vocab,
        n_coarse=args.n_coarse,
        n_levels=args.levels,
    )
    return StageLM.random(config, preset)


def clock(device: torch.device) -> float:
    """Wall time after the device's queued work is done (a GPU runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def run_all(lms, seconds: float, batch: int, gen: torch.Generator) -> dict[str, tuple[int, float]]:
    """{stage: (tokens generated, seconds)} for `seconds` of audio."""
    semantic_lm, coarse_lm, fine_lm = lms
    device = semantic_lm.model.head.weight.device
    result = {}
    start = clock(device)
    n = round(seconds * semantic_lm.stage.semantic_rate)
    semantic = semantic_continue(semantic_lm, None, n, batch_size=batch, eos=False, generator=gen)
    result["semantic"] = (semantic.tokens.numel(), clock(device) - start)
    start = clock(device)
    coarse = coarse_generate(coarse_lm, semantic.tokens, generator=gen)
    result["coarse"] = (coarse.numel(), clock(device) - start)
    start = clock(device)
    codes = fine_generate(fine_lm, coarse, generator=gen)
    result["fine"] = (codes.numel() - coarse.numel(), clock(device) - start)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--semantic-vocab", type=int, default=512)
    parser.add_argument("--acoustic-vocab", type=int, default=1024)
    parser.add_argument("--n-coarse", type=int, default=3)
    parser.add_argument("--levels", type=int, default=8)
    parser.add_argument("--half-values", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the PyTorch step there)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lms = [build(args.preset, stage, args) for stage in ("semantic", "coarse", "fine")]
    if args.half_values:
        with torch.no_grad():
            for lm in lms:
                for param in lm.model.parameters():
                    param.copy_(param.half().float())
    for lm in lms:
        lm.model.to(device)
    for lm in lms:
        print(
            f"{lm.stage.stage:9s} {lm.model.num_params() / 1e6:5.2f} M params, "
            f"vocab {lm.layout.vocab_size}, max length {lm.layout.max_length}"
        )
    gen = torch.Generator(device=device).manual_seed(0)
    run_all(lms, 1.0, 1, gen)  # warm-up
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{where}, threads {torch.get_num_threads()}, {args.seconds:g} s of audio")
    first: dict[str, float] = {}
    for batch in args.batches:
        result = run_all(lms, args.seconds, batch, gen)
        rates = {k: n / t for k, (n, t) in result.items()}
        total = sum(t for _, t in result.values())
        tokens = sum(n for n, _ in result.values())
        rates["all"] = tokens / total
        parts = ", ".join(f"{k} {rate:6.0f} tok/s" for k, rate in rates.items() if k != "all")
        print(f"batch {batch}: {parts}; all {tokens} tokens in {total:.2f} s", end=" ")
        print(f"({rates['all']:.0f} tok/s)")
        if not first:
            first, base = rates, batch
        else:
            ratios = ", ".join(f"{k} {rate / first[k]:.2f}x" for k, rate in rates.items())
            print(f"  tokens/s vs batch {base}: {ratios}")


if __name__ == "__main__":
    main()
