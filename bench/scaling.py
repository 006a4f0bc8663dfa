"""Sizing the paper-sized models (`speech-gpu`'s presets) for 100 h / 1k h / 60k h on 1 / 8 / 64
GPUs: the measured inputs of docs/scaling.md's table, and the projection made from them.

    OMP_NUM_THREADS=1 .venv/bin/python bench/scaling.py [--mfu 0.35] [--peak-tflops 989]
        [--mfu-for codec=0.1] [--efficiency 8=0.9 64=0.8] [--epoch-cap 16]
        [--target-seconds 8] [--steps 2] [--only lm_fine] [--markdown]

For every model `segue recipe speech-gpu` trains (codec `audiolm` + its discriminators, semantic
`base` iterations 1 and 2, LMs `audiolm`, SoundStorm `base`), one training step as the engine
runs it (the task's own `train_step`, backward of each phase, clip + AdamW step):

1. FLOPs per step at the preset's batch shape, counted by `torch.utils.flop_counter.
   FlopCounterMode` (matmuls, convolutions, attention through SDPA's math backend, in full;
   forward + backward; element-wise ops, FFTs and the optimizer are not counted). Counted on
   the meta device at the full shape when the step runs there, else on real tensors at batch 1
   and multiplied by the batch (printed).
2. Seconds per step MEASURED on this CPU at one thread, at a reduced shape (batch 1, a shorter
   crop or sequence: printed) chosen so a step takes about --target-seconds; the mean of
   --steps steps after one warm-up step. Its FLOPs are counted the same way (on the real
   tensors of the timed shape), which gives the CPU's achieved FLOP/s and a full-shape CPU
   time = measured s/step x full FLOPs / measured FLOPs.
3. Projections (not measurements): s/step on one GPU = full FLOPs / (peak x MFU); with N GPUs
   in data parallelism, each process keeps the preset's batch (segue's train.batch_size is per
   process), so a step takes s/step(1) / efficiency(N) and a run needs steps(1) / N steps.
   Steps per data size follow `planned_steps` (the rule is printed). Memory per GPU is
   `segue.recipes.sizing.model_sizes`'s estimate, the numbers `segue recipe speech-gpu
   --out DIR --dry-run` prints.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from segue.recipes.named import speech_gpu
from segue.recipes.sizing import model_sizes, shard_folders
from segue.train import Phase

HOURS = (100.0, 1000.0, 60000.0)
GPUS = (1, 8, 64)
REFERENCE_HOURS = 40.0  # speech-gpu's corpus, which the presets' max_steps were set for


@dataclass
class Bench:
    """One trained model: how to build its task, make a batch, and what one step sees."""

    name: str
    build: Callable[[], object]  # -> a task with setup() done (modules built)
    batch: Callable[[int, float, torch.device], dict]  # (batch, length, device) -> a batch
    batch_size: int  # the preset's, per process
    length: float  # the preset's crop seconds / sequence length / window
    unit: str  # what `length` counts
    steps: int  # the preset's max_steps
    seconds_per_item: float  # audio seconds one item of a batch covers (for epochs)
    capped: bool  # whether --epoch-cap applies (token models) or the preset's steps stand
    quantum: float = 1.0  # a reduced length is a multiple of this (crops: the model's hop)
    step: int = 10**9  # the global step passed to train_step (past every warm-up)


# ----------------------------------------------------------------------------------- models


def benches(tmp: Path) -> list[Bench]:
    from segue.codec.train import CodecTask
    from segue.lm.train import LMTask
    from segue.soundstorm.train import SoundStormTask

    config = speech_gpu()
    out: list[Bench] = []

    codec_cfg = copy.deepcopy(config.codec)
    codec_cfg.data.manifest = "unused"  # the task only checks it is set
    rate = codec_cfg.model.sample_rate

    def codec_task():
        task = CodecTask(codec_cfg)
        task.setup(torch.device("cpu"))
        return task

    def codec_batch(b: int, seconds: float, device: torch.device) -> dict:
        return {"audio": 0.1 * torch.randn(b, round(seconds * rate), device=device)}

    out.append(Bench(
        "codec", codec_task, codec_batch, codec_cfg.train.batch_size,
        codec_cfg.data.crop_seconds, "s crop", codec_cfg.optim.max_steps,
        codec_cfg.data.crop_seconds, capped=False,
        quantum=codec_cfg.model.hop_length / rate,
    ))  # fmt: skip

    for it in (1, 2):
        out.append(_semantic_bench(config, it))

    with shard_folders(config, tmp) as (semantic_dir, acoustic_dir):
        for stage in ("semantic", "coarse", "fine"):
            lm_cfg = copy.deepcopy(getattr(config, f"lm_{stage}"))
            lm_cfg.data.semantic_shards, lm_cfg.data.acoustic_shards = semantic_dir, acoustic_dir
            lm_task = LMTask(lm_cfg)  # fills vocab and length from the shards' meta.json
            out.append(_lm_bench(lm_task, stage))
        storm_cfg = copy.deepcopy(config.soundstorm)
        storm_cfg.data.semantic_shards, storm_cfg.data.acoustic_shards = semantic_dir, acoustic_dir
        storm_task = SoundStormTask(storm_cfg)
        out.append(_soundstorm_bench(storm_task))
    return out


def _semantic_bench(config, it: int) -> Bench:
    """HuBERT iteration `it`: targets from MFCCs (it1) or the it1 model's layer (it2), made in
    the step as training does; a random codebook stands in for the fitted k-means."""
    from segue.semantic.extractors import MFCCExtractor, ModelExtractor
    from segue.semantic.kmeans import KMeansCodebook
    from segue.semantic.model import SemanticModel
    from segue.semantic.tokenizer import SemanticTokenizer
    from segue.semantic.train import SemanticTask

    cfg = copy.deepcopy(getattr(config.semantic, f"it{it}"))
    model_cfg = cfg.model

    def task():
        t = SemanticTask.__new__(SemanticTask)  # no manifest, no k-means fit
        t.config = cfg
        t.model = SemanticModel(model_cfg)
        if it == 1:
            extractor = MFCCExtractor(
                model_cfg.sample_rate, model_cfg.mel_hop, pool=4, cmn=cfg.targets.mfcc_cmn
            )
        else:
            teacher = SemanticModel(config.semantic.it1.model)
            layer = cfg.targets.layer
            layer = teacher.config.tokenizer_layer if layer is None else layer
            extractor = ModelExtractor(teacher, layer)
        d, k = extractor.dim, cfg.targets.k
        codebook = KMeansCodebook(torch.zeros(d), torch.ones(d), torch.randn(k, d))
        t.targets = SemanticTokenizer(extractor, codebook)
        return t

    def batch(b: int, seconds: float, device: torch.device) -> dict:
        n = round(seconds * model_cfg.sample_rate)  # a whole number of hops (see _cut)
        return {
            "audio": 0.1 * torch.randn(b, n, device=device),
            "length": torch.full((b,), n, dtype=torch.long, device=device),
        }

    return Bench(
        f"semantic.it{it}", task, batch, cfg.train.batch_size, cfg.data.crop_seconds,
        "s crop", cfg.optim.max_steps, cfg.data.crop_seconds, capped=False,
        quantum=model_cfg.hop_length / model_cfg.sample_rate,
    )  # fmt: skip


def _fresh(task):
    """A builder of CPU copies of `task`, each with its own modules (the meta count builds some
    too)."""

    def build():
        fresh = copy.copy(task)
        fresh.setup(torch.device("cpu"))
        return fresh

    return build


def _lm_bench(task, stage: str) -> Bench:
    cfg = task.config
    length = cfg.model.max_seq_len - 1  # input = window - 1

    def batch(b: int, tokens: float, device: torch.device) -> dict:
        t = round(tokens)
        # each position's id from the range the stage generates there (its acoustic level), as
        # in real windows: the level softmax's work depends on which range a target is in
        lo, hi = (torch.tensor(r, device=device) for r in zip(*task.layout.target_ranges(t + 1)))
        ids = lo + (torch.rand(b, t + 1, device=device) * (hi - lo)).long()
        return {"input": ids[:, :-1], "target": ids[:, 1:]}

    return Bench(
        f"lm_{stage}", _fresh(task), batch, cfg.train.batch_size, length, "tokens",
        cfg.optim.max_steps, cfg.stage.window_seconds, capped=True,
    )  # fmt: skip


def _soundstorm_bench(task) -> Bench:
    cfg = task.config
    model = cfg.model

    def batch(b: int, window: float, device: torch.device) -> dict:
        w = round(window)
        frames = w * model.ratio
        return {
            "semantic": torch.randint(0, model.semantic_vocab, (b, w), device=device),
            "codes": torch.randint(0, model.codebook_size, (b, model.n_levels, frames),
                                   device=device),
            "length": torch.full((b,), frames, dtype=torch.long, device=device),
        }  # fmt: skip

    return Bench(
        "soundstorm", _fresh(task), batch, cfg.train.batch_size, task.window, "semantic tokens",
        cfg.optim.max_steps, cfg.data.window_seconds, capped=True,
    )  # fmt: skip


# ----------------------------------------------------------------------------------- one step


def train_step(task, batch: dict, step: int, optimizers: dict | None) -> None:
    """The engine's step without its bookkeeping: backward of each phase as it comes (the
    codec's discriminator, then its generator), then clip + AdamW of that phase's optimizer
    (when `optimizers` is given). Every task here returns a `Phase` or yields phases."""
    output = task.train_step(task.modules(), batch, step)
    for phase in [output] if isinstance(output, Phase) else output:
        phase.loss.reshape(()).backward()
        if optimizers is not None:
            optimizer = optimizers[phase.optimizer]
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)


def make_optimizers(task) -> dict:
    modules = task.modules()
    specs = task.optimizers()
    return {
        name: torch.optim.AdamW([p for m in spec.modules for p in modules[m].parameters()])
        for name, spec in specs.items()
    }


def count_flops(task, batch: dict, step: int) -> int:
    """FLOPs of one step. Attention runs on SDPA's math backend while counting: the counter
    does not know the CPU's fused attention kernel (it would count 0), and meta tensors take
    the math path anyway, so every count includes attention, in full (no causal saving)."""
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel([SDPBackend.MATH]):
        train_step(task, batch, step, None)
    for module in task.modules().values():
        module.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def full_flops(bench: Bench) -> tuple[int, str]:
    """FLOPs of one step at the preset's shape: on the meta device if the step runs there,
    else at batch 1 on real tensors, times the batch."""
    b, length = bench.batch_size, bench.length
    try:
        meta_task = _on_meta(bench)
        flops = count_flops(meta_task, bench.batch(b, length, torch.device("meta")), bench.step)
        return flops, f"meta device, full shape {b} x {length:g} {bench.unit}"
    except Exception as error:  # data-dependent ops do not run on meta
        why = f"{type(error).__name__}: {str(error).splitlines()[0][:70]}"
    flops = count_flops(bench.build(), bench.batch(1, length, torch.device("cpu")), bench.step)
    return flops * b, f"real tensors at 1 x {length:g} {bench.unit}, x {b} ({why})"


def _on_meta(bench: Bench):
    with torch.device("meta"):
        return bench.build()


def measure(bench: Bench, task, length: float, steps: int) -> tuple[float, int]:
    """Mean seconds of `steps` steps after a warm-up step, at batch 1 x `length`; their FLOPs."""
    optimizers = make_optimizers(task)
    batch = bench.batch(1, length, torch.device("cpu"))
    torch.manual_seed(0)
    train_step(task, batch, bench.step, optimizers)  # warm-up (and the codec's k-means init)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(task, batch, bench.step, optimizers)
    seconds = (time.perf_counter() - start) / steps
    return seconds, count_flops(task, batch, bench.step)


# ----------------------------------------------------------------------------------- plan


def planned_steps(bench: Bench, hours: float, epoch_cap: float) -> tuple[int, float]:
    """(steps on one GPU, epochs they make): the preset's max_steps, except that a token model
    (the LMs, SoundStorm) stops at `epoch_cap` epochs of the data, one epoch being the data's
    audio seconds / (batch x the audio seconds one item covers)."""
    per_epoch = hours * 3600 / (bench.batch_size * bench.seconds_per_item)
    steps = bench.steps
    if bench.capped:
        steps = min(steps, math.ceil(epoch_cap * per_epoch))
    return steps, steps / per_epoch


def parse_efficiency(items: list[str]) -> dict[int, float]:
    out = {1: 1.0}
    for item in items:
        n, value = item.split("=")
        out[int(n)] = float(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="GPU peak, TFLOP/s (H100 SXM dense bf16: 989)")
    parser.add_argument("--mfu", type=float, default=0.35, help="assumed model FLOP utilisation")
    parser.add_argument("--mfu-for", nargs="*", default=[],
                        help="MFU of one model instead of --mfu, NAME=VALUE (e.g. codec=0.15)")
    parser.add_argument("--efficiency", nargs="*", default=["8=0.9", "64=0.8"],
                        help="data-parallel scaling efficiency per GPU count, N=E")
    parser.add_argument("--epoch-cap", type=float, default=16.0,
                        help="epochs at most for the LMs and SoundStorm")
    parser.add_argument("--target-seconds", type=float, default=8.0,
                        help="about this long a timed CPU step (the shape is reduced to fit)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up")
    parser.add_argument("--only", nargs="*", default=None, help="model names to run")
    parser.add_argument("--markdown", action="store_true",
                        help="also print the plan as docs/scaling.md's table rows")
    args = parser.parse_args()  # fmt: skip
    torch.set_num_threads(1)
    efficiency = parse_efficiency(args.efficiency)
    mfu_for = {name: float(v) for name, v in (item.split("=") for item in args.mfu_for)}
    gpu_flops = args.peak_tflops * 1e12 * args.mfu

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")  # fmt: skip
    print(f"assumptions: GPU peak {args.peak_tflops:g} TFLOP/s x MFU {args.mfu:g} = "
          f"{gpu_flops / 1e12:.1f} TFLOP/s achieved; data-parallel efficiency "
          + ", ".join(f"{n} GPUs {e:g}" for n, e in sorted(efficiency.items()))
          + f"; LMs and SoundStorm capped at {args.epoch_cap:g} epochs"
          + "".join(f"; MFU {v:g} for {k}" for k, v in mfu_for.items()))  # fmt: skip

    memory = {s.name: s for s in model_sizes(speech_gpu(), Path("/nonexistent/segue-bench"))}
    rows = []
    with tempfile.TemporaryDirectory(prefix="segue-scaling-") as tmp:
        for bench in benches(Path(tmp)):
            if args.only and bench.name not in args.only:
                continue
            mfu = mfu_for.get(bench.name, args.mfu)
            gpu_flops = args.peak_tflops * 1e12 * mfu
            rows.append(run_one(bench, args, gpu_flops, efficiency, memory[bench.name]))
    print_plan(rows, args, efficiency)


@dataclass
class Row:
    bench: Bench
    flops: int
    how: str
    cpu_seconds: float
    cpu_length: float
    cpu_flops: int
    gpu_seconds: float
    memory: float | None


def run_one(bench: Bench, args, gpu_flops: float, efficiency, size) -> Row:
    start = time.perf_counter()
    flops, how = full_flops(bench)
    # The timed shape: batch 1, the length cut so that a step takes ~target seconds, from a
    # probe at 1/16 of the preset's length (FLOPs of a step are ~linear in its length).
    probe_length = _cut(bench, bench.length / 16)
    probe_seconds, probe_flops = measure(bench, bench.build(), probe_length, 1)
    rate = probe_flops / probe_seconds
    one_item = flops / bench.batch_size
    length = _cut(bench, min(bench.length, bench.length * args.target_seconds * rate / one_item))
    seconds, measured_flops = measure(bench, bench.build(), length, args.steps)
    row = Row(bench, flops, how, seconds, length, measured_flops, flops / gpu_flops,
              size.memory)  # fmt: skip
    full_cpu = seconds * flops / measured_flops
    print(f"\n{bench.name}: {size.params / 1e6:.2f} M params, preset batch "
          f"{bench.batch_size} x {bench.length:g} {bench.unit}, {bench.steps} steps")
    print(f"  FLOPs/step (full shape): {flops:.4g}  [{how}]")
    print(f"  measured on CPU, 1 thread: {seconds:.3f} s/step at 1 x {length:g} {bench.unit} "
          f"(mean of {args.steps} after a warm-up), {measured_flops:.4g} FLOPs -> "
          f"{measured_flops / seconds / 1e9:.2f} GFLOP/s achieved")
    print(f"  full shape on this CPU (scaled by FLOPs): {full_cpu:.1f} s/step, "
          f"{full_cpu * bench.steps / 3600 / 24:.1f} days for {bench.steps} steps")
    print(f"  projected GPU s/step at {gpu_flops / 1e12:.1f} TFLOP/s: "
          f"{flops / gpu_flops:.4f} (1 GPU), "
          + ", ".join(f"{flops / gpu_flops / efficiency[n]:.4f} ({n})"
                      for n in sorted(efficiency) if n > 1))  # fmt: skip
    mem = "not estimated" if size.memory is None else f"{size.memory / 2**30:.2f} GiB"
    print(f"  memory per GPU (preflight estimate, fp32): {mem}")
    print(f"  ({time.perf_counter() - start:.0f} s for this model)")
    return row


def _cut(bench: Bench, length: float) -> float:
    """A length the model takes: a multiple of `bench.quantum` (whole tokens, whole hops of
    audio), at least 8 of them."""
    return max(8, round(length / bench.quantum)) * bench.quantum


def print_plan(rows: list[Row], args, efficiency: dict[int, float]) -> None:
    print(f"\nplan: steps per data size (1 GPU; N GPUs: steps / N, each process keeps its batch);"
          f" LMs and SoundStorm: min(preset max_steps, {args.epoch_cap:g} epochs), codec and "
          "semantic: the preset's max_steps")  # fmt: skip
    gpus = sorted(efficiency)
    header = "model         hours   steps(1)  epochs   " + "  ".join(
        f"s/step,{n}GPU  wall h,{n}  GPU-h,{n}" for n in gpus
    )
    print(header)
    for row in rows:
        for hours in HOURS:
            steps, epochs = planned_steps(row.bench, hours, args.epoch_cap)
            cells = []
            for n in gpus:
                per_step = row.gpu_seconds / efficiency[n]
                wall = math.ceil(steps / n) * per_step / 3600
                cells.append(f"{per_step:11.4f}  {wall:8.2f}  {wall * n:8.1f}")
            print(f"{row.bench.name:<13} {hours:>6g}  {steps:>8}  {epochs:7.2f}   "
                  + "  ".join(cells))
    if args.markdown:
        print_markdown(rows, args, efficiency)
    print("total GPU-hours (every model above, one after another):")
    for hours in HOURS:
        totals = []
        for n in gpus:
            wall = sum(
                math.ceil(planned_steps(r.bench, hours, args.epoch_cap)[0] / n)
                * r.gpu_seconds / efficiency[n] / 3600
                for r in rows
            )
            totals.append(f"{n} GPU(s): {wall:.2f} h wall, {wall * n:.1f} GPU-h")
        print(f"  {hours:>6g} h of audio: " + "; ".join(totals))


def print_markdown(rows: list[Row], args, efficiency: dict[int, float]) -> None:
    """The plan as markdown rows: model, audio, FLOPs/step, steps, epochs, measured CPU s/step
    (and its shape), projected s/step and GPU-hours per GPU count, memory per GPU."""
    gpus = sorted(efficiency)
    print("\nmarkdown:")
    for row in rows:
        b = row.bench
        memory = "not estimated" if row.memory is None else f"{row.memory / 2**30:.2f} GiB"
        for hours in HOURS:
            steps, epochs = planned_steps(b, hours, args.epoch_cap)
            per_step = [row.gpu_seconds / efficiency[n] for n in gpus]
            gpu_hours = [math.ceil(steps / n) * t / 3600 * n for n, t in zip(gpus, per_step)]
            audio = f"{hours / 1000:g}k h" if hours >= 1000 else f"{hours:g} h"
            print(f"| {b.name} | {audio} | {row.flops:.4g} | {steps} | {epochs:.2f} "
                  f"| {row.cpu_seconds:.3f} (1 x {row.cpu_length:g} {b.unit}) "
                  f"| {' / '.join(f'{t:.4f}' for t in per_step)} "
                  f"| {' / '.join(f'{h:.1f}' for h in gpu_hours)} | {memory} |")  # fmt: skip


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
