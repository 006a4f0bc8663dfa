"""Baseline half of bench/codec_vs_audiolm_pytorch.py: audiolm-pytorch's SoundStream.

Runs INSIDE .bench/audiolm-venv (bench/setup_audiolm_pytorch.sh), never in segue's venv, and does
not import segue: everything comes in as plain files named by the JSON config that the main
script writes.

    .bench/audiolm-venv/bin/python bench/_audiolm_pytorch_worker.py RUN/baseline.json

Method:
- model: `audiolm_pytorch.SoundStream` at the config's sample rate and strides (2, 4, 5, 8 ->
  50 Hz), with our codec's number of codebooks and codebook size (equal bitrate); its latent
  (`codebook_dim`) is our `latent_dim`, and `channels` is the value whose generator parameter
  count (encoder + local attention + RVQ + decoder, `non_discr_parameters()`) is closest to
  ours. Everything else is the package default (local attention, EMA k-means RVQ with quantizer
  dropout, its multi-scale + complex-STFT discriminators).
- training: the loop of its `SoundStreamTrainer.train_step` with its defaults (Adam with
  betas (0.9, 0.99) and no weight decay, generator gradients clipped to norm 0.5, a gradient
  penalty on the discriminators every 4 steps, generator loss = its
  `soundstream(wave, return_loss_breakdown=True)`, discriminator loss = its
  `return_discr_loss=True, return_discr_losses_separately=True`), with three changes for
  equality: one batch per step for both halves (its trainer draws a second one for the
  discriminator), batch s = crops[order[s]] (the crops and order our codec trained on), and our
  learning rate, schedule (linear warm-up, cosine decay) and discriminator warm-up (before it:
  no discriminator step, generator loss without the adversarial and feature terms). No EMA
  weights, on either side.
- timing: wall seconds of each optimizer step (generator + discriminator), median over the
  generator-only and over the adversarial steps separately, skipping each phase's first 3.
- evaluation: tokenize + decode_from_codebook_indices of each reference wav (input zero-padded
  to a multiple of the hop, output cut back), written as 16-bit wavs.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "_stubs"))  # fairseq stub

import torch
from audiolm_pytorch import SoundStream
from audiolm_pytorch.optimizer import get_optimizer

SKIP = 3  # warm-up steps per phase left out of the timing median


def read_wav(path: str) -> np.ndarray:
    with wave.open(path, "rb") as handle:
        assert handle.getsampwidth() == 2 and handle.getnchannels() == 1, path
        data = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return data.astype(np.float32) / 32768.0


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())


def build(cfg: dict, channels: int) -> SoundStream:
    torch.manual_seed(cfg["seed"])
    return SoundStream(
        channels=channels,
        strides=tuple(cfg["strides"]),
        codebook_dim=cfg["latent_dim"],
        codebook_size=cfg["codebook_size"],
        rq_num_quantizers=cfg["n_codebooks"],
        target_sample_hz=cfg["sample_rate"],
    )


def count(params) -> int:
    return sum(p.numel() for p in {id(p): p for p in params}.values())


def sized_model(cfg: dict) -> tuple[SoundStream, int]:
    """The SoundStream whose generator parameter count is closest to ours."""
    target, best = cfg["our_generator_params"], None
    for channels in range(2, 129):
        n = count(build(cfg, channels).non_discr_parameters())
        print(f"  channels={channels}: {n:,} generator params", flush=True)
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (channels, n)
        if n > target:
            break
    return build(cfg, best[0]), best[0]


class WarmupCosine:
    """Same multiplier as segue.train.schedule.WarmupCosine (copied: no segue import here)."""

    def __init__(self, warmup: int, total: int, min_ratio: float):
        self.warmup, self.total, self.min_ratio = max(0, warmup), max(1, total), min_ratio

    def __call__(self, k: int) -> float:
        if k < self.warmup:
            return (k + 1) / self.warmup
        if k >= self.total:
            return self.min_ratio
        progress = (k - self.warmup) / max(1, self.total - self.warmup)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def optimizer(params, cfg: dict, total: int):
    opt = get_optimizer(params, lr=cfg["lr"], wd=0.0)  # SoundStreamTrainer's default wd=0: Adam
    schedule = WarmupCosine(cfg["warmup_steps"], total, cfg["min_lr_ratio"])
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def train(model: SoundStream, cfg: dict) -> dict:
    crops = np.load(cfg["crops"], mmap_mode="r")  # [steps, batch, samples] int16
    order = np.load(cfg["order"])  # [steps, batch] flat crop indices, as our codec saw them
    flat = crops.reshape(-1, crops.shape[-1])
    steps, warmup = cfg["steps"], cfg["disc_warmup_steps"]
    g_opt, g_sched = optimizer(model.non_discr_parameters(), cfg, steps)
    discriminators = [*model.discriminators.parameters(), *model.stft_discriminator.parameters()]
    d_opt, d_sched = optimizer(discriminators, cfg, steps - warmup)
    model.train()
    times: dict[str, list[float]] = {"generator": [], "adversarial": []}
    last: dict[str, float] = {}
    for step in range(steps):
        audio = torch.from_numpy(flat[order[step]].astype(np.float32) / 32768.0)
        adversarial = step >= warmup
        start = time.perf_counter()
        loss, (recon, spectral, adv, feature, commit) = model(audio, return_loss_breakdown=True)
        if not adversarial:  # discriminator warm-up: reconstruction terms only
            loss = (
                recon * model.recon_loss_weight
                + spectral * model.multi_spectral_recon_loss_weight
                + commit
            )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)  # as SoundStreamTrainer
        g_opt.step()
        g_opt.zero_grad()
        g_sched.step()
        last = {"loss": loss.item(), "recon": recon.item(), "spectral": spectral.item()}
        if adversarial:
            d_opt.zero_grad()
            losses = model(
                audio,
                return_discr_loss=True,
                return_discr_losses_separately=True,
                apply_grad_penalty=step % 4 == 0,
            )
            for _, d_loss in losses:
                d_loss.backward(retain_graph=True)
            d_opt.step()
            d_opt.zero_grad()
            d_sched.step()
            last.update(adversarial=adv.item(), feature=feature.item())
            last["discriminator"] = sum(v.item() for k, v in losses if "grad_penalty" not in k)
        times["adversarial" if adversarial else "generator"].append(time.perf_counter() - start)
        if step % max(1, steps // 20) == 0 or step == steps - 1:
            seconds = time.perf_counter() - start
            values = " ".join(f"{k}={v:.4g}" for k, v in last.items())
            print(f"  step {step + 1}/{steps} {seconds:.2f}s {values}", flush=True)
    kept = {phase: values[SKIP:] or values for phase, values in times.items()}
    return {
        "seconds_per_step": {k: statistics.median(v) if v else None for k, v in kept.items()},
        "mean_seconds_per_step": {k: statistics.mean(v) if v else None for k, v in kept.items()},
        "step_times": times,
        "final_losses": last,
    }


@torch.no_grad()
def reconstruct(model: SoundStream, cfg: dict) -> dict:
    model.eval()
    hop, rate, out = model.seq_len_multiple_of, cfg["sample_rate"], Path(cfg["baseline_dir"])
    frames = seconds = 0.0
    for index, path in enumerate(cfg["eval_files"]):
        audio = read_wav(path)
        x = torch.from_numpy(np.pad(audio, (0, (-len(audio)) % hop)))[None]
        codes = model.tokenize(x)
        if codes.ndim == 4:  # [groups, batch, frames, q] -> [batch, frames, groups * q]
            codes = codes.permute(1, 2, 0, 3).reshape(codes.shape[1], codes.shape[2], -1)
        assert codes.shape[-1] == cfg["n_codebooks"] and int(codes.max()) < cfg["codebook_size"]
        y = model.decode_from_codebook_indices(codes).reshape(-1)[: len(audio)]
        write_wav(out / "recon" / f"{index:03d}.wav", y.numpy(), rate)
        frames, seconds = frames + codes.shape[1], seconds + x.shape[-1] / rate
        print(f"  reconstructed {index + 1}/{len(cfg['eval_files'])}", flush=True)
    frame_rate = frames / seconds
    bitrate = cfg["n_codebooks"] * math.log2(cfg["codebook_size"]) * frame_rate
    return {"frame_rate": frame_rate, "bitrate": bitrate}


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    torch.set_num_threads(cfg["threads"])
    print(f"audiolm-pytorch SoundStream: sizing to ~{cfg['our_generator_params']:,} params")
    model, channels = sized_model(cfg)
    generator = count(model.non_discr_parameters())
    result = {
        "channels": channels,
        "codebook_dim": cfg["latent_dim"],
        "generator_params": generator,
        "discriminator_params": count(model.parameters()) - generator,
        "torch": torch.__version__,
    }
    print(f"training {cfg['steps']} steps (channels={channels}, {generator:,} params)", flush=True)
    result.update(train(model, cfg))
    result.update(reconstruct(model, cfg))
    Path(cfg["baseline_dir"], "result.json").write_text(json.dumps(result, indent=1))
    print("baseline done", flush=True)


if __name__ == "__main__":
    main()
