"""Our `tiny` codec vs. audiolm-pytorch's SoundStream: equal data, steps, bitrate, similar size.

    bash bench/setup_audiolm_pytorch.sh        # once: .bench/audiolm-venv
    .venv/bin/python bench/codec_vs_audiolm_pytorch.py --manifest corpora/speech/manifest.jsonl \
        --steps N --batch-size 8 --crop-seconds 0.5 --eval-files 20 --out runs/bench-codec

Method:
1. Data. steps x batch crops are drawn once from the train split with our CropDataset (each
   epoch a seeded permutation of the files) and stored as 16-bit PCM in OUT/crops.npy
   [steps, batch, samples]. Our codec trains on them through the real engine (`Trainer` +
   `CodecTask`, with `train_dataset()` swapped for these crops): the engine shuffles them, each
   step's crop indices are recorded (OUT/order.npy), and the baseline gets exactly those batches
   in exactly that order. Held-out evaluation files: `--eval-files` files of the test split
   (speakers never trained on), taken round-robin over its speakers, written as 16-bit wavs
   (OUT/eval/ref) that both models encode.
2. Models. Ours: the `tiny` preset. Theirs: `audiolm_pytorch.SoundStream` with our strides,
   number of codebooks and codebook size (the same bitrate; checked from its codes), latent =
   our latent_dim, and `channels` chosen so that its generator parameter count is the closest
   to ours (bench/_audiolm_pytorch_worker.py, run in its own venv).
3. Training. Same steps, batch, learning rate, schedule (linear warm-up + cosine) and
   discriminator warm-up (the preset's, `--disc-warmup` to change) on both sides; each side keeps
   its own losses, discriminators, optimizer betas and gradient clipping. Seconds per step:
   median wall time of an optimizer step (generator + discriminator), separately for
   generator-only (warm-up) and adversarial steps, each phase's first 3 steps left out.
4. Evaluation: encode -> decode with all codebooks, then segue.eval.metrics.all_metrics (mel
   distance, SI-SNR, PESQ-WB, STOI) against the reference, averaged over files.

Writes OUT/results.json and prints one table plus the ratios ours/theirs.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from segue import audio as audio_io
from segue.codec.train import CodecTask, run_config_for_preset
from segue.data.crops import CropDataset
from segue.data.manifest import read_manifest
from segue.eval.metrics import all_metrics, mean_metrics
from segue.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("mel_distance", "si_snr", "pesq", "stoi")
SKIP = 3  # warm-up steps per phase left out of the timing median


def extract_crops(args, rate: int, path: Path) -> None:
    """steps x batch train crops, [steps, batch, samples] int16, file order permuted per epoch."""
    crops = CropDataset(
        args.manifest, args.crop_seconds, rate, split="train", seed=args.seed, min_seconds=0.1
    )
    total, n = args.steps * args.batch_size, len(crops)
    out = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.int16, shape=(args.steps, args.batch_size, crops.crop_samples)
    )
    flat = out.reshape(total, -1)
    order = None
    for k in range(total):
        epoch, i = divmod(k, n)
        if i == 0:
            crops.set_epoch(epoch)
            order = np.random.default_rng((args.seed, epoch)).permutation(n)
        flat[k] = np.round(np.clip(crops[order[i]]["audio"].numpy(), -1, 32767 / 32768) * 32768)
        if (k + 1) % max(1, total // 10) == 0:
            print(f"  crops {k + 1}/{total} ({n} train files)", flush=True)
    out.flush()


def eval_references(args, rate: int, folder: Path) -> list[Path]:
    """`eval_files` test-split files, round-robin over speakers, as 16-bit wavs."""
    manifest = read_manifest(args.manifest, split="test")
    by_group: dict[str, list] = {}
    for entry in sorted(manifest.entries, key=lambda e: e.path):
        by_group.setdefault(entry.group, []).append(entry)
    queues = [by_group[g] for g in sorted(by_group)]
    chosen = []
    while len(chosen) < args.eval_files and any(queues):
        for queue in queues:
            if queue and len(chosen) < args.eval_files:
                chosen.append(queue.pop(0))
    paths = []
    for index, entry in enumerate(chosen):
        path = folder / f"{index:03d}.wav"
        audio_io.save(path, audio_io.load(manifest.resolve(entry), rate), rate)
        paths.append(path)
    print(f"  {len(paths)} held-out files from {len(by_group)} test speakers", flush=True)
    return paths


class PrecomputedCrops(torch.utils.data.Dataset):
    def __init__(self, path: Path):
        crops = np.load(path, mmap_mode="r")
        self.flat = crops.reshape(-1, crops.shape[-1])

    def __len__(self) -> int:
        return len(self.flat)

    def __getitem__(self, index: int) -> dict:
        audio = torch.from_numpy(self.flat[index].astype(np.float32) / 32768.0)
        return {"audio": audio, "length": len(audio), "index": index}


class BenchCodecTask(CodecTask):
    """CodecTask on the pre-extracted crops, recording which crops each step trained on."""

    def __init__(self, config, crops: Path):
        super().__init__(config)
        self.crops, self.order = crops, {}

    def train_dataset(self) -> PrecomputedCrops:
        return PrecomputedCrops(self.crops)

    def valid_dataset(self) -> None:
        return None

    def train_step(self, models, batch, step):
        self.order[step] = batch["index"].tolist()
        return super().train_step(models, batch, step)


def step_timing(times: list[float], warmup: int) -> dict:
    """Median (table) and mean (JSON) seconds per step of each phase, first SKIP steps left out."""
    phases = {"generator": times[:warmup], "adversarial": times[warmup:]}
    kept = {k: v[SKIP:] or v for k, v in phases.items()}
    return {
        "seconds_per_step": {k: statistics.median(v) if v else None for k, v in kept.items()},
        "mean_seconds_per_step": {k: statistics.mean(v) if v else None for k, v in kept.items()},
    }


def train_ours(args, config, crops: Path, folder: Path) -> tuple[torch.nn.Module, dict]:
    shutil.rmtree(folder, ignore_errors=True)  # our own run folder: never resumed
    task = BenchCodecTask(config, crops)
    trainer = Trainer(task, config, folder)
    times: list[float] = []
    step_fn = trainer.train_step

    def timed_step() -> dict:
        start = time.perf_counter()
        values = step_fn()
        times.append(time.perf_counter() - start)
        return values

    trainer.train_step = timed_step
    try:
        trainer.fit()
    finally:
        trainer.close()
    if sorted(task.order) != list(range(args.steps)):
        raise RuntimeError(f"engine ran steps {sorted(task.order)[:5]}..., not 0..{args.steps}")
    np.save(folder.parent / "order.npy", np.array([task.order[s] for s in range(args.steps)]))
    warmup = config.model.loss.discriminator_warmup_steps
    modules = trainer.raw_modules
    return modules["codec"].eval(), {
        "generator_params": sum(p.numel() for p in modules["codec"].parameters()),
        "discriminator_params": sum(p.numel() for p in modules["discriminator"].parameters()),
        **step_timing(times, warmup),
        "step_times": times,
    }


@torch.no_grad()
def reconstruct_ours(codec, refs: list[Path], folder: Path, rate: int) -> dict:
    frames = seconds = 0.0
    for index, path in enumerate(refs):
        audio = torch.from_numpy(audio_io.load(path, rate))
        codes = codec.encode(audio)
        audio_io.save(folder / f"{index:03d}.wav", codec.decode(codes)[0, : len(audio)], rate)
        padded = math.ceil(len(audio) / codec.hop_length) * codec.hop_length
        frames, seconds = frames + codes.shape[-1], seconds + padded / rate
    frame_rate = frames / seconds  # codes.shape[1]: all n_codebooks levels
    return {
        "frame_rate": frame_rate,
        "bitrate": codes.shape[1] * math.log2(codec.codebook_size) * frame_rate,
    }


def evaluate(refs: list[Path], folder: Path, rate: int) -> dict:
    rows = []
    for index, ref in enumerate(refs):
        reference = audio_io.load(ref, rate)
        estimate = audio_io.load(folder / f"{index:03d}.wav", rate)
        rows.append({k: all_metrics(estimate, reference, rate)[k] for k in METRICS})
    return mean_metrics(rows)


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(results: dict) -> str:
    head = ["model", "gen params", "bps", "mel dist", "SI-SNR", "PESQ", "STOI", "s/step G"]
    head.append("s/step G+D")
    rows = []
    for name in ("ours", "theirs"):
        r, m = results[name], results[name]["metrics"]
        sps = r["seconds_per_step"]
        rows.append([
            r["label"], f"{r['generator_params']:,}", fmt(r["bitrate"], ".0f"),
            fmt(m["mel_distance"], ".3f"), fmt(m["si_snr"], ".2f"), fmt(m["pesq"], ".3f"),
            fmt(m["stoi"], ".3f"), fmt(sps["generator"], ".3f"), fmt(sps["adversarial"], ".3f"),
        ])  # fmt: skip
    ratio = [fmt(results["ratios"].get(k), ".3f") for k in RATIO_KEYS]
    ratio[RATIO_KEYS.index("si_snr")] = f"{results['ratios']['si_snr_difference_db']:+.2f} dB"
    rows.append(["ours/theirs", *ratio])
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    lines = [" | ".join(str(c).rjust(w) for c, w in zip(row, widths)) for row in [head, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


RATIO_KEYS = ("generator_params", "bitrate", *METRICS, "generator", "adversarial")


def ratios(ours: dict, theirs: dict) -> dict:
    def flat(r: dict) -> dict:
        return {**r["metrics"], **r["seconds_per_step"], **r}

    a, b = flat(ours), flat(theirs)
    out = {k: a[k] / b[k] if a.get(k) is not None and b.get(k) else None for k in RATIO_KEYS}
    out["si_snr"] = None  # a ratio of dB values means nothing: the difference instead
    out["si_snr_difference_db"] = a["si_snr"] - b["si_snr"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop-seconds", type=float, default=0.5)
    parser.add_argument("--eval-files", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-codec"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--disc-warmup", type=int, default=None, help="default: the preset's")
    parser.add_argument("--baseline-python", default=str(ROOT / ".bench/audiolm-venv/bin/python"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    config = run_config_for_preset("tiny", args.manifest)
    model, rate = config.model, config.model.sample_rate
    if args.disc_warmup is not None:
        model.loss.discriminator_warmup_steps = args.disc_warmup
    warmup = min(model.loss.discriminator_warmup_steps, args.steps)
    model.loss.discriminator_warmup_steps = warmup
    config.optim.max_steps = args.steps
    config.data.crop_seconds = args.crop_seconds
    train = config.train
    train.batch_size, train.seed, train.num_workers = args.batch_size, args.seed, 0
    train.tensorboard, train.log_every = False, max(1, args.steps // 20)
    train.checkpoint_every = train.valid_every = args.steps + 1

    print(f"[1/5] extracting {args.steps} x {args.batch_size} training crops", flush=True)
    crops = out / "crops.npy"
    extract_crops(args, rate, crops)
    refs = eval_references(args, rate, out / "eval" / "ref")

    print(f"[2/5] training ours ({args.steps} steps, discriminator from {warmup})", flush=True)
    codec, ours = train_ours(args, config, crops, out / "ours")
    ours["label"] = "segue tiny"
    ours.update(reconstruct_ours(codec, refs, out / "ours" / "recon", rate))

    print("[3/5] training audiolm-pytorch SoundStream (its own venv)", flush=True)
    baseline_cfg = {
        "seed": args.seed, "threads": args.threads, "steps": args.steps,
        "sample_rate": rate, "strides": list(model.strides), "latent_dim": model.latent_dim,
        "n_codebooks": model.n_codebooks, "codebook_size": model.codebook_size,
        "batch_size": args.batch_size, "crop_seconds": args.crop_seconds,
        "lr": config.optim.lr, "warmup_steps": config.optim.warmup_steps,
        "min_lr_ratio": config.optim.min_lr_ratio, "disc_warmup_steps": warmup,
        "our_generator_params": ours["generator_params"], "crops": str(crops),
        "order": str(out / "order.npy"), "eval_files": [str(p) for p in refs],
        "baseline_dir": str(out / "theirs"),
    }  # fmt: skip
    (out / "baseline.json").write_text(json.dumps(baseline_cfg, indent=1))
    worker = [args.baseline_python, str(ROOT / "bench/_audiolm_pytorch_worker.py")]
    subprocess.run([*worker, str(out / "baseline.json")], check=True, cwd=ROOT)
    theirs = json.loads((out / "theirs" / "result.json").read_text())
    theirs["label"] = f"audiolm-pytorch (ch={theirs['channels']})"
    if not math.isclose(theirs["bitrate"], ours["bitrate"], rel_tol=1e-6):
        raise RuntimeError(f"bitrates differ: ours {ours['bitrate']}, theirs {theirs['bitrate']}")

    print(f"[4/5] metrics on {len(refs)} held-out files", flush=True)
    ours["metrics"] = evaluate(refs, out / "ours" / "recon", rate)
    theirs["metrics"] = evaluate(refs, out / "theirs" / "recon", rate)

    results = {"args": {k: str(v) for k, v in vars(args).items()}, "baseline_config": baseline_cfg}
    results.update(ours=ours, theirs=theirs, ratios=ratios(ours, theirs))
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"[5/5] results ({out / 'results.json'})\n")
    print(report(results))
    print(
        f"\ndiscriminator params: ours {ours['discriminator_params']:,}, theirs "
        f"{theirs['discriminator_params']:,}. s/step G: generator-only steps (discriminator "
        f"warm-up, {warmup} steps); G+D: adversarial steps."
    )


if __name__ == "__main__":
    sys.exit(main())
