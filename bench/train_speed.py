"""Seconds per training step of the CPU recipe's token models (speech-tiny: the three LMs and
SoundStorm, at their preset batch and sequence length), three ways, ratios against the first:

    baseline      fp32, dropout on the attention weights too (attention_dropout None = dropout)
    no-attn-drop  fp32, attention_dropout 0: SDPA keeps its fused CPU kernel (with dropout on
                  the weights it falls back to the math path: [B, H, T, T] scores, a Bernoulli
                  mask of that size, two batched matmuls)
    bf16          the same under bf16 autocast (`train.precision=bf16`): this CPU's
                  avx512_bf16 matmuls
    level         the same with the LMs' `softmax="level"` (each target over its own level's
                  ids: the head computes 1,024 logits per token, not the whole vocabulary;
                  SoundStorm has one head per level already, so its row is bf16's again)

    OMP_NUM_THREADS=1 .venv/bin/python bench/train_speed.py [--steps 3] [--only lm_fine]
        [--recipe speech-tiny] [--set lm_fine.model.d_model=256 ...]

One step is the engine's (the task's own train_step, backward, clip, AdamW), on random tokens of
the shards' shapes (bench/scaling.py's builders); the mean of --steps steps after a warm-up step,
every setting in the same process, interleaved step by step so a background load hits all alike.
Whether the cheaper settings train as well is a separate measurement (docs/training.md, "CPU
training speed").
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from scaling import _lm_bench, _soundstorm_bench, make_optimizers, train_step

from segue.config import apply_overrides
from segue.recipes import RECIPES
from segue.recipes.sizing import shard_folders

SETTINGS = {  # name: (attention_dropout override or "keep", autocast dtype, LM softmax)
    "baseline": ("keep", None, "full"),
    "no-attn-drop": (0.0, None, "full"),
    "bf16": (0.0, torch.bfloat16, "full"),
    "level": (0.0, torch.bfloat16, "level"),
}
MODELS = ("lm_semantic", "lm_coarse", "lm_fine", "soundstorm")


def benches(config, tmp: Path, only: list[str]) -> list:
    """(name, setting, bench) for every model and setting, each with its own task."""
    from segue.lm.train import LMTask
    from segue.soundstorm.train import SoundStormTask

    out = []
    with shard_folders(config, tmp) as (semantic_dir, acoustic_dir):
        for name in only:
            for setting, (attention, dtype, softmax) in SETTINGS.items():
                cfg = copy.deepcopy(getattr(config, name))
                cfg.data.semantic_shards, cfg.data.acoustic_shards = semantic_dir, acoustic_dir
                if attention != "keep":
                    cfg.model.attention_dropout = attention
                if name == "soundstorm":
                    bench = _soundstorm_bench(SoundStormTask(cfg))
                else:
                    cfg.softmax = softmax
                    bench = _lm_bench(LMTask(cfg), name.removeprefix("lm_"))
                out.append((name, setting, dtype, bench))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="speech-tiny", choices=sorted(RECIPES))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="STEP.KEY=VALUE")  # fmt: skip
    parser.add_argument("--only", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = apply_overrides(RECIPES[args.recipe].make_config(), args.overrides)
    print(f"recipe {args.recipe}, {args.threads} thread(s), mean of {args.steps} steps after "
          f"a warm-up; s/step (speed-up over baseline)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for name, setting, dtype, bench in benches(config, Path(tmp), args.only):
            torch.manual_seed(0)
            task = bench.build()
            batch = bench.batch(bench.batch_size, bench.length, torch.device("cpu"))
            runs.append((name, setting, dtype, task, batch, make_optimizers(task), bench))
        times: dict[tuple[str, str], list[float]] = {(r[0], r[1]): [] for r in runs}
        for i in range(args.steps + 1):  # step 0: warm-up
            for name, setting, dtype, task, batch, optimizers, bench in runs:
                cast = (
                    torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()
                )
                start = time.perf_counter()
                with cast:
                    train_step(task, batch, bench.step, optimizers)
                if i:
                    times[name, setting].append(time.perf_counter() - start)
    shapes = {r[0]: f"{r[6].batch_size} x {r[6].length:g} {r[6].unit}" for r in runs}
    print(f"{'model':12s} {'batch':>26s} " + " ".join(f"{s:>20s}" for s in SETTINGS))
    for name in args.only:
        base = statistics.mean(times[name, "baseline"])
        cells = []
        for setting in SETTINGS:
            mean = statistics.mean(times[name, setting])
            cells.append(f"{mean:8.2f} s ({base / mean:4.2f}x)")
        print(f"{name:12s} {shapes[name]:>26s} " + " ".join(f"{c:>20s}" for c in cells))


if __name__ == "__main__":
    main()
