"""Sampling speed of the `tiny` (or `audiolm`) stage presets, random weights, on this machine.

    .venv/bin/python bench/lm_speed.py [--preset tiny] [--seconds 10] [--threads 1]

Prints tokens/s of each stage at batch 1 and 8, and the wall time to generate every token of
`--seconds` of audio at batch 1 (semantic -> coarse -> fine, the stages' own windows). The
token spaces are those of the tiny codec (8 x 1024 codes, 3 coarse, 50 Hz) and a 512-cluster
semantic tokenizer (25 Hz) unless told otherwise.
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


def run_all(lms, seconds: float, batch: int, gen: torch.Generator) -> dict[str, tuple[int, float]]:
    """{stage: (tokens generated, seconds)} for `seconds` of audio."""
    semantic_lm, coarse_lm, fine_lm = lms
    result = {}
    start = time.perf_counter()
    n = round(seconds * semantic_lm.stage.semantic_rate)
    semantic = semantic_continue(semantic_lm, None, n, batch_size=batch, eos=False, generator=gen)
    result["semantic"] = (semantic.tokens.numel(), time.perf_counter() - start)
    start = time.perf_counter()
    coarse = coarse_generate(coarse_lm, semantic.tokens, generator=gen)
    result["coarse"] = (coarse.numel(), time.perf_counter() - start)
    start = time.perf_counter()
    codes = fine_generate(fine_lm, coarse, generator=gen)
    result["fine"] = (codes.numel() - coarse.numel(), time.perf_counter() - start)
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
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lms = [build(args.preset, stage, args) for stage in ("semantic", "coarse", "fine")]
    for lm in lms:
        print(
            f"{lm.stage.stage:9s} {lm.model.num_params() / 1e6:5.2f} M params, "
            f"vocab {lm.layout.vocab_size}, max length {lm.layout.max_length}"
        )
    gen = torch.Generator().manual_seed(0)
    run_all(lms, 1.0, 1, gen)  # warm-up
    print(f"threads {torch.get_num_threads()}, {args.seconds:g} s of audio")
    for batch in args.batches:
        result = run_all(lms, args.seconds, batch, gen)
        total = sum(t for _, t in result.values())
        parts = ", ".join(f"{k} {n / t:6.0f} tok/s" for k, (n, t) in result.items())
        tokens = sum(n for n, _ in result.values())
        print(
            f"batch {batch}: {parts}; all {tokens} tokens in {total:.2f} s "
            f"({tokens / total:.0f} tok/s)"
        )


if __name__ == "__main__":
    main()
