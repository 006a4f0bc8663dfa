"""Where one batch-1 decoding step of the semantic LM spends its time, and the floor that sets.

    .venv/bin/python bench/lm_decode_floor.py [--size anchor|tiny] [--threads 1] [--theirs 103]

At batch 1 a decoding step reads every weight once. This bench times, in one process:
- `step`: one whole token through `semantic_continue` (model step + sampling), 250 tokens,
  three ways: the PyTorch step (`Block.step`), the fused C step (`segue.lm.fused`) on float32
  weights, and the fused step on weights rounded to float16 values (what the shipped bundle
  holds: the C step then reads them as float16, half the bytes);
- `products`: only the step's matrix products (qkv, proj, up, down per layer, and the head) on
  the same weights, fp32 `torch.mm`, and the same products as int8 weight-only
  (`torch._weight_int8pack_mm`, bf16 activations), the one reduced-precision kernel here that
  reads fewer bytes faster (bf16 / fp16 `torch.mm` are printed beside it);
- `overhead`: a step of a model with the same layers and heads of size 4, whose products cost
  next to nothing: the per-kernel cost of the step's ~100 small calls plus sampling (PyTorch
  step), or the cost of sampling and the C call (fused step).

With `--theirs T` (audiolm-pytorch's tokens/s at the same size, from
bench/lm_vs_audiolm_pytorch.py), it prints the per-token budget of a 10x speed-up next to the
fp32 products' time, and the speed-up of each way of stepping.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time

import torch
from lm_vs_audiolm_pytorch import SIZES  # the sizes of the comparison (bench/ is on sys.path)

from segue.lm import fused
from segue.lm.config import stage_preset
from segue.lm.model import Transformer
from segue.lm.stages import StageLM, semantic_continue


def semantic_lm(size: str, **overrides) -> StageLM:
    stage = stage_preset(
        "tiny", "semantic", semantic_vocab=512, acoustic_vocab=1024, n_coarse=3, n_levels=8,
        temperature=1.0,
    )  # fmt: skip
    size_fields = {"d_model": SIZES[size]["dim"], "n_layer": SIZES[size]["depth"],
                   "n_head": SIZES[size]["heads"]}  # fmt: skip
    return StageLM.random(stage, "tiny", seed=0, dropout=0.0, **{**size_fields, **overrides})


def best_of(fn, repeats: int) -> float:
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@contextlib.contextmanager
def pytorch_step():
    """Caches made inside use the PyTorch step, not the fused one."""
    original = Transformer.new_cache
    Transformer.new_cache = lambda self, *a, **k: original(self, *a, **k, fused=False)
    try:
        yield
    finally:
        Transformer.new_cache = original


def step_ms(lm: StageLM, repeats: int, tokens: int = 250) -> float:
    """ms per token of `semantic_continue` from nothing, top-k 10 % (the comparison's setting)."""
    gen = torch.Generator().manual_seed(0)
    k = math.ceil(0.1 * (lm.layout.n_codes + 1))
    run = lambda: semantic_continue(lm, None, tokens, eos=False, top_k=k, generator=gen)  # noqa: E731
    return 1000 * best_of(run, repeats) / tokens


def step_ways_ms(lm: StageLM, repeats: int) -> dict[str, float]:
    """ms per token: PyTorch step, fused fp32, fused on float16 values (weights rounded)."""
    with pytorch_step():
        out = {"pytorch": step_ms(lm, repeats)}
    if fused.library() is None:
        return out
    out["fused fp32"] = step_ms(lm, repeats)
    for param in lm.model.parameters():
        param.copy_(param.half().float())
    out["fused fp16 values"] = step_ms(lm, repeats)
    return out


def products_ms(lm: StageLM, repeats: int) -> dict[str, float]:
    """ms for one token's matrix products, [1, in] x [in, out], per weight format."""
    linears = [(b.attn.qkv, b.attn.proj, b.mlp.up, b.mlp.down) for b in lm.model.blocks]
    weights = [m.weight for four in linears for m in four] + [lm.model.head.weight]
    weights = [w.detach() for w in weights]
    out: dict[str, float] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        mats = [(torch.randn(1, w.shape[1], dtype=dtype), w.to(dtype).t()) for w in weights]
        out[name] = 1000 * best_of(lambda m=mats: [torch.mm(x, w) for x, w in m], repeats * 20)
    packed = []
    for w in weights:
        scale = w.abs().amax(1).clamp_min(1e-12) / 127
        q = torch.round(w / scale[:, None]).to(torch.int8)
        packed.append((torch.randn(1, w.shape[1], dtype=torch.bfloat16), q, scale.bfloat16()))
    mm8 = torch._weight_int8pack_mm
    out["int8"] = 1000 * best_of(lambda: [mm8(x, q, s) for x, q, s in packed], repeats * 20)
    out["fp32_mb"] = sum(w.numel() for w in weights) * 4 / 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--size", choices=sorted(SIZES), default="anchor", help="anchor: d 256 x 6; tiny: d 192 x 4"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs, fastest kept")
    parser.add_argument(
        "--theirs", type=float, default=None, help="audiolm-pytorch tok/s at this size"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with torch.no_grad():  # not inference mode: fused weights are kept while unchanged
        lm = semantic_lm(args.size)
        prod = products_ms(lm, args.repeats)
        ways = step_ways_ms(lm, args.repeats)
        narrow = semantic_lm(args.size, d_model=4 * lm.model.config.n_head)  # head size 4
        overheads = step_ways_ms(narrow, args.repeats)
    c = lm.model.config
    step, overhead = ways["pytorch"], overheads["pytorch"]
    print(f"semantic LM d {c.d_model} x {c.n_layer} layers, {lm.model.num_params() / 1e6:.2f} M "
          f"params, {args.threads} thread(s), batch 1")  # fmt: skip
    for way, ms in ways.items():
        print(
            f"step, {way:17s}       {ms:6.3f} ms/token = {1000 / ms:6.0f} tok/s "
            f"= {step / ms:.2f}x the PyTorch step (heads of size 4: {overheads[way]:.3f} ms)"
        )
    print(
        f"products, fp32 ({prod['fp32_mb']:.1f} MB)     {prod['fp32']:6.3f} ms "
        f"= {prod['fp32_mb'] / prod['fp32']:.1f} GB/s, {prod['fp32'] / step:.0%} of the step"
    )
    for name in ("bf16", "fp16", "int8"):
        print(f"products, {name:4s}               {prod[name]:6.3f} ms = "
              f"{prod['fp32'] / prod[name]:.2f}x fp32")  # fmt: skip
    share = overhead / step
    print(f"overhead (heads of size 4)    {overhead:6.3f} ms/token, {share:.0%} of the step")
    if args.theirs:
        budget = 1000 / (10 * args.theirs)
        print(
            f"10x over {args.theirs:.0f} tok/s needs <= {budget:.3f} ms/token; the fp32 products "
            f"alone take {prod['fp32']:.3f} ms ({prod['fp32'] / budget:.0%} of that budget)"
        )
        for way, ms in ways.items():
            print(f"  {way}: {1000 / ms / args.theirs:.1f}x")


if __name__ == "__main__":
    main()
