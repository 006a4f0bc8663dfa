"""The batch-1 decoding step in one C call: `segue/lm/csrc/decode_step.c`, through ctypes.

At batch 1 on a CPU, a PyTorch decoding step spends as long in the dispatch of its ~100 small
kernels as in reading the weights. The C step does the same arithmetic in one call, and reads
float16 weights when every weight of the model is a float16 value (a bundle saved in half
precision): the same numbers from half the bytes. `Transformer.new_cache` attaches a
`FusedDecoder` to caches of batch 1 on the CPU in float32; `Transformer.extend` uses it for
single-token steps outside autograd. Logits match the PyTorch step to float32 rounding (another
summation order); tests/lm/test_fused.py checks it.

The library is compiled on first use with the system C compiler (`$CC`, default `cc`; -O3
-march=native), into `$SEGUE_CACHE_DIR` (default `~/.cache/segue`), keyed by the source, the
flags and the CPU; about a second. Without a compiler, or with `SEGUE_FUSED_DECODE=0`, decoding
uses the PyTorch step, with a warning in the first case.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from segue.config import cache_dir

if TYPE_CHECKING:
    from segue.lm.model import KVCache, Transformer

SOURCE = Path(__file__).parent / "csrc" / "decode_step.c"
FLAGS = ("-O3", "-march=native", "-ffast-math", "-shared", "-fPIC", "-std=c11")
DISABLE = "SEGUE_FUSED_DECODE"  # "0": always the PyTorch step



def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _build() -> Path:
    """Compile the step (once per source, compiler, flags and CPU) -> the shared library."""
    compiler = os.environ.get("CC", "cc")
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, check=True
    ).stdout
    key = hashlib.sha256(
        "\0".join([SOURCE.read_text(), compiler, version, *FLAGS, _cpu_flags()]).encode()
    ).hexdigest()[:16]
    out = cache_dir() / "kernels" / f"decode_step-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        built = Path(tmp) / out.name
        base = [compiler, *FLAGS, str(SOURCE), "-o", str(built)]
        # -lmvec: glibc's vector expf (GELU, softmax); not every libc has it.
        for libs in (["-lmvec", "-lm"], ["-lm"]):
            result = subprocess.run([*base, *libs], capture_output=True, text=True)
            if result.returncode == 0:
                break
        else:
            raise RuntimeError(f"{compiler} failed: {result.stderr.strip()[-2000:]}")
        os.replace(built, out)  # atomic: a concurrent build finds a whole file or none
    return out


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled step, or None (disabled, or no compiler: warned once)."""
    if os.environ.get(DISABLE, "1") == "0":
        return None
    try:
        lib = ctypes.CDLL(str(_build()))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        warnings.warn(
            f"segue: no fused decoding step ({error}); decoding uses PyTorch kernels "
            f"(slower at batch 1). Set {DISABLE}=0 to silence this.",
            stacklevel=2,
        )
        return None
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.segue_decode_step.restype = ctypes.c_int
    lib.segue_decode_step.argtypes = [p, p, i64, p, p, p, p, i64, p, p, i64, i64, i64, p]
    return lib


def _is_half_exact(weight: torch.Tensor) -> bool:
    return bool(torch.equal(weight.half().float(), weight))


class FusedWeights:
    """The model's weights as the C step reads them: matrices transposed to [in, out] and
    contiguous (float16 when every matrix holds float16 values), one pointer array.

    A copy: valid while the parameters keep their values (`Transformer.fused_weights` remakes
    it when a parameter changes).
    """

    def __init__(self, model: Transformer):
        blocks = model.blocks
        linears = [(b.attn.qkv, b.attn.proj, b.mlp.up, b.mlp.down) for b in blocks]
        matrices = [m for four in linears for m in four] + [model.head]
        self.half = all(_is_half_exact(m.weight) for m in matrices)
        dtype = torch.float16 if self.half else torch.float32

        def matrix(linear: torch.nn.Linear) -> torch.Tensor:
            return linear.weight.detach().t().contiguous().to(dtype)

        def vector(weight: torch.Tensor) -> torch.Tensor:
            return weight.detach().contiguous()

        self.tensors = [
            t
            for b, (qkv, proj, up, down) in zip(blocks, linears)
            for t in (
                vector(b.norm1.weight),
                matrix(qkv),
                matrix(proj),
                vector(b.norm2.weight),
                matrix(up),
                matrix(down),
            )
        ]
        self.layers = (ctypes.c_void_p * len(self.tensors))(*(t.data_ptr() for t in self.tensors))
        self.embed = vector(model.embed.weight)
        self.norm = vector(model.norm.weight)
        self.head = matrix(model.head)  # [D, V]


_MADE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (key, FusedWeights)


def weights_for(model: Transformer) -> FusedWeights:
    """`model`'s FusedWeights, made again when a parameter has changed (or been replaced).

    Kept here, not on the model: ctypes pointer arrays cannot be deep-copied or pickled.
    """
    try:
        key = tuple((p.data_ptr(), p._version) for p in model.parameters())
    except RuntimeError:  # inference tensors keep no version counter: made every time
        return FusedWeights(model)
    made = _MADE.get(model)
    if made is None or made[0] != key:
        made = _MADE[model] = (key, FusedWeights(model))
    return made[1]


class FusedDecoder:
    """One cache's decoding steps through the C step: `step(ids [1, 1], lo, hi)` appends the
    token at `cache.length` and returns the logits [1, hi - lo] (the caller advances length)."""

    def __init__(self, lib: ctypes.CDLL, weights: FusedWeights, model: Transformer, cache: KVCache):
        c = model.config
        self.call = lib.segue_decode_step
        self.weights, self.cache = weights, cache
        cos, sin, _ = cache.rope
        self.cos, self.sin = cos.contiguous(), sin.contiguous()
        self.row_bytes = self.cos.stride(0) * self.cos.element_size()
        hidden = model.blocks[0].mlp.up.weight.shape[0]
        dims = (c.d_model, c.n_head, c.kv_heads, c.head_dim, hidden, c.n_layer, cache.max_len)
        self.dims = (ctypes.c_int64 * 8)(*dims, int(weights.half))
        self.vocab = weights.head.shape[1]

    def step(self, ids: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        pos, w, token = self.cache.length, self.weights, int(ids)
        if not 0 <= token < w.embed.shape[0]:  # the C step reads the row unchecked
            raise IndexError(f"token id {token} is outside the vocabulary [0, {w.embed.shape[0]})")
        if not 0 <= lo < hi <= self.vocab:
            raise ValueError(f"logit range [{lo}, {hi}) is not inside [0, {self.vocab})")
        logits = torch.empty(1, hi - lo, dtype=torch.float32)
        status = self.call(
            self.dims,
            w.embed.data_ptr(),
            token,
            w.layers,
            self.cache.kv.data_ptr(),
            self.cos.data_ptr() + pos * self.row_bytes,
            self.sin.data_ptr() + pos * self.row_bytes,
            pos,
            w.norm.data_ptr(),
            w.head.data_ptr(),
            self.vocab,
            lo,
            hi,
            logits.data_ptr(),
        )
        if status != 0:
            raise MemoryError("the fused decoding step could not allocate its scratch memory")
        return logits
