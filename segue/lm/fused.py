"""The decoding step in one C call for small batches: `segue/lm/csrc/decode_step.c`, via ctypes.

At small batches on a CPU, a PyTorch decoding step spends as long in the dispatch of its ~100
small kernels as in reading the weights, and a batch of 8 costs about 8 steps' time. The C step
does the same arithmetic in one call, reads each weight once for the whole batch, and reads
float16 weights when every weight of the model is a float16 value (a bundle saved in half
precision): the same numbers from half the bytes. A `DecodeSession` (segue/lm/decode.py) on the
CPU in float32 with at most `MAX_BATCH` sequences steps through a `FusedStep` outside autograd.
Logits match the PyTorch step to float32 rounding (another summation order);
tests/lm/test_fused.py checks it.

Everything a step reads goes through one struct (`StepArgs` here, `SegueStep` in C); when the
library is loaded its size and every field's offset are compared with the C side's, so the two
cannot drift apart silently. The step allocates nothing: its scratch memory is the session's.
It is built with -ffast-math (vectorized reductions and exp); the tests compare its logits with
the PyTorch step's and pin the shipped bundle's outputs.

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
from segue.errors import InputError

if TYPE_CHECKING:
    from segue.lm.decode import DecodeSession
    from segue.lm.model import Transformer

SOURCE = Path(__file__).parent / "csrc" / "decode_step.c"
FLAGS = ("-O3", "-march=native", "-ffast-math", "-shared", "-fPIC", "-std=c11")
DISABLE = "SEGUE_FUSED_DECODE"  # "0": always the PyTorch step
#: The largest batch that steps in C (one thread). Measured on the tiny presets at one thread
#: (bench/lm_speed.py --batches 1 8 16 32): at 16 sequences the C step is still ~2x faster than the
#: PyTorch step, at 32 they are even, and beyond that PyTorch's threaded matrix products win.
MAX_BATCH = 16

_i64, _ptr = ctypes.c_int64, ctypes.c_void_p


class StepArgs(ctypes.Structure):
    """`SegueStep` of decode_step.c, field for field (checked when the library loads)."""

    _fields_ = [
        ("size", _i64),
        *((name, _i64) for name in ("d_model", "n_head", "n_kv_head", "head_dim", "hidden")),
        *((name, _i64) for name in ("n_layer", "max_len", "half", "batch")),
        ("embed", _ptr),
        ("layers", _ptr),
        ("norm", _ptr),
        ("head", _ptr),
        ("ld_head", _i64),
        ("kv", _ptr),
        ("scratch", _ptr),
        ("scratch_floats", _i64),
        ("tokens", _ptr),
        ("cos_", _ptr),
        ("sin_", _ptr),
        ("pos", _i64),
        ("lo", _i64),
        ("hi", _i64),
        ("logits", _ptr),
    ]


def _check_layout(lib: ctypes.CDLL) -> None:
    """Raise if the library's SegueStep is not StepArgs: the same field names in the same
    order, the same struct size, and the same offset and size of every field."""
    names = [name for name, _ in StepArgs._fields_]
    theirs = lib.segue_step_fields().decode().rstrip(",").split(",")
    out = (_i64 * (2 * len(theirs) + 1))()
    written = lib.segue_step_layout(out, len(out))
    fields = [getattr(StepArgs, name) for name in names]
    want = [ctypes.sizeof(StepArgs), *(n for f in fields for n in (f.offset, f.size))]
    if theirs != names or written != len(want) or list(out) != want:
        raise RuntimeError(
            f"decode_step.c's SegueStep {theirs} (size and offsets {list(out)[:written]}) does "
            f"not match StepArgs {names} ({want}): edit both together"
        )


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
    args = ctypes.POINTER(StepArgs)
    lib.segue_step_fields.restype, lib.segue_step_fields.argtypes = ctypes.c_char_p, []
    lib.segue_step_layout.restype, lib.segue_step_layout.argtypes = _i64, [_ptr, _i64]
    lib.segue_step_scratch.restype, lib.segue_step_scratch.argtypes = _i64, [args]
    lib.segue_decode_step.restype, lib.segue_decode_step.argtypes = ctypes.c_int, [args]
    _check_layout(lib)
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


class FusedStep:
    """A session's single-token steps through the C step: `step(ids [B], pos, lo, hi)` writes
    the tokens' keys and values at `pos` and returns the logits [B, hi - lo]."""

    def __init__(self, lib: ctypes.CDLL, weights: FusedWeights, session: DecodeSession):
        model = session.model
        c = model.config
        self.call, self.weights = lib.segue_decode_step, weights
        cos, sin, _ = session.rope
        self.cos, self.sin = cos.contiguous(), sin.contiguous()
        self.row_bytes = self.cos.stride(0) * self.cos.element_size()
        self.vocab = weights.head.shape[1]
        kv = session.kv
        self.args = args = StepArgs(
            size=ctypes.sizeof(StepArgs),
            d_model=c.d_model,
            n_head=c.n_head,
            n_kv_head=c.kv_heads,
            head_dim=c.head_dim,
            hidden=model.blocks[0].mlp.up.weight.shape[0],
            n_layer=c.n_layer,
            max_len=session.max_len,
            half=int(weights.half),
            batch=session.batch,
            embed=weights.embed.data_ptr(),
            layers=ctypes.cast(weights.layers, ctypes.c_void_p),
            norm=weights.norm.data_ptr(),
            head=weights.head.data_ptr(),
            ld_head=self.vocab,
            kv=kv.data_ptr(),
        )
        self.kv = kv  # the session's tensor, kept alive with the pointer to it
        self.scratch = torch.empty(lib.segue_step_scratch(ctypes.byref(args)), dtype=torch.float32)
        args.scratch, args.scratch_floats = self.scratch.data_ptr(), self.scratch.numel()

    def step(self, ids: torch.Tensor, pos: int, lo: int, hi: int) -> torch.Tensor:
        args, batch = self.args, self.args.batch
        ids = ids.reshape(batch)
        if ids.dtype != torch.int64 or not ids.is_contiguous():
            ids = ids.to(torch.int64).contiguous()
        vocab = self.weights.embed.shape[0]
        low, high = (int(ids), int(ids)) if batch == 1 else map(int, torch.aminmax(ids))
        if low < 0 or high >= vocab:  # the C step reads the rows unchecked
            bad = low if low < 0 else high
            raise IndexError(f"token id {bad} is outside the vocabulary [0, {vocab})")
        if not 0 <= lo < hi <= self.vocab:
            raise InputError(f"logit range [{lo}, {hi}) is not inside [0, {self.vocab})")
        logits = torch.empty(batch, hi - lo, dtype=torch.float32)
        args.tokens = ids.data_ptr()
        args.cos_ = self.cos.data_ptr() + pos * self.row_bytes
        args.sin_ = self.sin.data_ptr() + pos * self.row_bytes
        args.pos, args.lo, args.hi, args.logits = pos, lo, hi, logits.data_ptr()
        status = self.call(ctypes.byref(args))
        if status != 0:  # the layout is checked at load and the scratch sized by the C side
            raise RuntimeError(f"the fused decoding step failed (status {status})")
        return logits
