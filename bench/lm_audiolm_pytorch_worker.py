"""Baseline half of bench/lm_vs_audiolm_pytorch.py: audiolm-pytorch's three transformers.

Runs INSIDE .bench/audiolm-venv (bench/setup_audiolm_pytorch.sh), never in segue's venv, and does
not import segue. One measurement per process (so that peak memory is that measurement's):

    .bench/audiolm-venv/bin/python bench/lm_audiolm_pytorch_worker.py '{"stage": "coarse", ...}'

Spec fields: stage (semantic|coarse|fine), mode (train|sample), batch, threads, seed, dim, depth,
heads, semantic_vocab, acoustic_vocab, n_coarse, levels, and per mode:
- train: steps, warmup (tokens/s from the median step time), semantic_tokens / frames (the
  sequence: semantic tokens for the semantic stage; semantic tokens + frames x Q' coarse ids for
  coarse; frames x (Q' + Q - Q') for fine);
- sample: the same lengths, generated with `generate(...)` of its wrappers, KV cache on, its
  default filtering (top-k keeping 10 % of the logits) and temperature 1; the fastest of
  `repeats` generations after a short warm-up.

Prints one JSON line: params, tokens, seconds, tokens_per_s, peak_rss_mb (ru_maxrss) and
base_rss_mb (after imports and model construction).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent / "_stubs"))  # fairseq stub

import torch
from audiolm_pytorch import (
    CoarseTransformer,
    CoarseTransformerWrapper,
    FineTransformer,
    FineTransformerWrapper,
    SemanticTransformer,
    SemanticTransformerWrapper,
    SoundStream,
)
from audiolm_pytorch import t5 as t5_module
from transformers import T5Config


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def build(spec: dict):
    """(wrapper, transformer): the transformer sized as ours, its wrapper for loss/generate."""
    # The transformers read google/t5-v1_1-base's config from the hub in __init__ (for text
    # conditioning we do not use): answer from a local config instead.
    t5_module.T5_CONFIGS[t5_module.DEFAULT_T5_NAME] = {"config": T5Config(d_model=768)}
    common = {
        "dim": spec["dim"],
        "depth": spec["depth"],
        "heads": spec["heads"],
        "dim_head": spec["dim"] // spec["heads"],
    }
    torch.manual_seed(spec["seed"])
    ks, ka, qc, q = spec["semantic_vocab"], spec["acoustic_vocab"], spec["n_coarse"], spec["levels"]
    stage = spec["stage"]
    if stage == "semantic":
        model = SemanticTransformer(num_semantic_tokens=ks, **common)
        with torch.no_grad():  # random weights: keep EOS from ending the sampled sequence
            model.to_logits.bias[model.eos_id] = -1e4
        return SemanticTransformerWrapper(transformer=model, unique_consecutive=False), model
    # the coarse and fine wrappers read their numbers of quantizers from a codec object
    codec = SoundStream(
        channels=2, codebook_dim=8, codebook_size=ka, rq_num_quantizers=q, use_local_attn=False
    )
    if stage == "coarse":
        model = CoarseTransformer(
            num_semantic_tokens=ks, codebook_size=ka, num_coarse_quantizers=qc, **common
        )
        wrapper = CoarseTransformerWrapper(transformer=model, codec=codec, unique_consecutive=False)
        return wrapper, model
    model = FineTransformer(
        num_coarse_quantizers=qc, num_fine_quantizers=q - qc, codebook_size=ka, **common
    )
    return FineTransformerWrapper(transformer=model, codec=codec), model


def data(spec: dict, gen: torch.Generator) -> dict:
    b, ks, ka = spec["batch"], spec["semantic_vocab"], spec["acoustic_vocab"]
    qc, q = spec["n_coarse"], spec["levels"]
    out = {}
    if spec["stage"] in ("semantic", "coarse"):
        out["semantic"] = torch.randint(0, ks, (b, spec["semantic_tokens"]), generator=gen)
    if spec["stage"] in ("coarse", "fine"):
        out["coarse"] = torch.randint(0, ka, (b, spec["frames"], qc), generator=gen)
    if spec["stage"] == "fine":
        out["fine"] = torch.randint(0, ka, (b, spec["frames"], q - qc), generator=gen)
    return out


def train(spec: dict, wrapper, batch: dict) -> tuple[int, float]:
    stage = spec["stage"]
    if stage == "semantic":
        kwargs = {"semantic_token_ids": batch["semantic"]}
        tokens = batch["semantic"].numel()
    elif stage == "coarse":
        kwargs = {"semantic_token_ids": batch["semantic"], "coarse_token_ids": batch["coarse"]}
        tokens = batch["semantic"].numel() + batch["coarse"].numel()
    else:
        kwargs = {"coarse_token_ids": batch["coarse"], "fine_token_ids": batch["fine"]}
        tokens = batch["coarse"].numel() + batch["fine"].numel()
    optimizer = torch.optim.AdamW(wrapper.transformer.parameters(), lr=1e-4)
    wrapper.train()
    times = []
    for _ in range(spec["warmup"] + spec["steps"]):
        start = time.perf_counter()
        loss = wrapper(**kwargs, return_loss=True)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return tokens, statistics.median(times[spec["warmup"] :])  # tokens of one step


def sample(spec: dict, wrapper, batch: dict) -> tuple[int, float]:
    stage, b = spec["stage"], spec["batch"]

    def run(scale: float) -> torch.Tensor:
        if stage == "semantic":
            n = max(2, round(spec["semantic_tokens"] * scale))
            return wrapper.generate(max_length=n, batch_size=b, temperature=1.0)
        if stage == "coarse":
            n = max(1, round(spec["frames"] * scale))
            semantic = batch["semantic"][:, : (n + 1) // 2]
            return wrapper.generate(semantic_token_ids=semantic, max_time_steps=n)
        n = max(1, round(spec["frames"] * scale))
        return wrapper.generate(coarse_token_ids=batch["coarse"][:, :n])

    run(0.05)  # warm-up
    best = None
    for _ in range(spec.get("repeats", 1)):  # the fastest of the repeats: a busy machine only
        start = time.perf_counter()  # ever slows a run down
        out = run(1.0)
        seconds = time.perf_counter() - start
        best = seconds if best is None else min(best, seconds)
    return out.numel(), best


def main() -> None:
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(spec["threads"])
    wrapper, model = build(spec)
    batch = data(spec, torch.Generator().manual_seed(spec["seed"]))
    base = rss_mb()
    if spec["mode"] == "train":
        tokens, seconds = train(spec, wrapper, batch)
    else:
        tokens, seconds = sample(spec, wrapper, batch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "params": sum(p.numel() for p in model.parameters()),
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "peak_rss_mb": peak,
        "base_rss_mb": base,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
