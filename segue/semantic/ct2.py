"""CTranslate2 model files read without CTranslate2, and a Whisper encoder rebuilt from them.

CTranslate2 runs Whisper's encoder fast (int8) but gives only its last layer. To tokenize from
another layer of the same model, offline, the weights are read out of the folder's `model.bin`
and put into a `transformers` `WhisperEncoder`, which any layer can be taken from
(`WhisperExtractor("ct2", ..., layer=L)` does this).

`model.bin` is what `ctranslate2.specs.ModelSpec._serialize` writes and `src/models/model.cc`
reads, all little-endian:

    uint32 binary version (1..6)
    string spec name, uint32 spec revision                    (version >= 2)
    uint32 number of variables, then for each:
        string name, uint8 rank, uint32 dims[rank],
        uint8 dtype id, uint32 byte count    (before version 4: uint8 item size, uint32 count)
        raw data
    uint32 number of aliases, then (string alias, string variable) pairs    (version >= 3)

where a string is a uint16 length (with the terminating NUL), then the bytes and a NUL. The dtype
ids are those of `DataType` (include/ctranslate2/types.h): float32, int8, int16, int32, float16,
bfloat16. A quantized weight `w` comes with `w_scale`: int8 has one scale per output row (a
convolution's [out, in, k] counts as [out, in * k]), int16 one for the whole tensor, and in both
the stored value is rint(w * scale), so w = stored / scale.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
from torch import nn

from segue.errors import InputError

MODEL_FILE = "model.bin"
MAX_BINARY_VERSION = 6  # what CTranslate2 4.x writes; its model.cc reads 1..6 as above
# DataType ids -> numpy dtypes (bfloat16 is read as raw uint16 and widened).
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}
BFLOAT16 = 5
ITEM_SIZES = {4: 0, 1: 1, 2: 2}  # binary versions < 4 store the item size instead of an id
MAX_RANK = 8


class _Reader:
    """Little-endian reads from a model.bin that name the file and byte on a short read."""

    def __init__(self, handle: BinaryIO, path: Path):
        self.handle, self.path = handle, path

    def error(self, reason: str) -> ValueError:
        return ValueError(f"{self.path}: not a valid CTranslate2 model.bin ({reason})")

    def bytes(self, n: int) -> bytes:
        position = self.handle.tell()
        data = self.handle.read(n)
        if len(data) != n:
            raise self.error(f"truncated: {n} bytes wanted at byte {position}, {len(data)} left")
        return data

    def skip(self, n: int) -> None:
        self.handle.seek(n, 1)

    def uint(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.bytes(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        length = self.uint("H")
        raw = self.bytes(length) if length else b""
        if not length or raw[-1:] != b"\0":
            raise self.error(f"bad string at byte {self.handle.tell() - length}")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(f"undecodable string at byte {self.handle.tell() - length}") from None

    def header(self) -> tuple[int, str, int]:
        version = self.uint("I")
        if not 1 <= version <= MAX_BINARY_VERSION:
            raise self.error(f"binary version {version}; this reader knows 1 to "
                             f"{MAX_BINARY_VERSION}")
        if version < 2:
            return version, "", 1
        return version, self.string(), self.uint("I")


def _model_file(path: str | Path) -> Path:
    path = Path(path)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{path}: not a CTranslate2 model folder (no {MODEL_FILE})")
    return file


def read_ct2_header(path: str | Path) -> tuple[int, str, int]:
    """(binary version, spec name, spec revision) of a CTranslate2 folder or model.bin."""
    file = _model_file(path)
    with open(file, "rb") as handle:
        return _Reader(handle, file).header()


def read_ct2_variables(path: str | Path, prefix: str = "") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 folder or model.bin whose names start with `prefix`.

    Float weights come back as float32, quantized ones (int8 / int16 with a `_scale`)
    dequantized to float32; the scales themselves are dropped. Integer scalars (e.g.
    `encoder/num_heads`) keep their type. Aliases (a variable stored once under two names) are
    resolved: both names are in the result. Raises FileNotFoundError without a model.bin and
    ValueError on a file that is not one (truncated, garbage, a newer binary version).
    """
    file = _model_file(path)
    raw: dict[str, np.ndarray] = {}
    with open(file, "rb") as handle:
        reader = _Reader(handle, file)
        version = reader.header()[0]
        count = reader.uint("I")
        for _ in range(count):
            name = reader.string()
            rank = reader.uint("B")
            if rank > MAX_RANK:
                raise reader.error(f"variable {name!r} has rank {rank}")
            shape = tuple(reader.uint("I") for _ in range(rank))
            if version >= 4:
                type_id, size = reader.uint("B"), reader.uint("I")
            else:
                item = reader.uint("B")
                if item not in ITEM_SIZES:
                    raise reader.error(f"variable {name!r} has item size {item}")
                type_id = ITEM_SIZES[item]
                size = reader.uint("I") * item
            if type_id not in DTYPES:
                raise reader.error(f"variable {name!r} has unknown dtype id {type_id}")
            dtype = np.dtype(DTYPES[type_id]).newbyteorder("<")
            if size != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
                raise reader.error(f"variable {name!r}: {size} bytes for shape {shape}")
            if not name.startswith(prefix):
                reader.skip(size)
                continue
            value = np.frombuffer(reader.bytes(size), dtype=dtype).reshape(shape)
            if type_id == BFLOAT16:
                value = (value.astype(np.uint32) << 16).view(np.float32)
            raw[name] = value
        aliases = []
        if version >= 3:
            for _ in range(reader.uint("I")):
                aliases.append((reader.string(), reader.string()))
    variables = _dequantize(raw)
    for alias, target in aliases:
        if alias.startswith(prefix) and target in variables:
            variables[alias] = variables[target]
    return variables


def _dequantize(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Floats to float32; `w` with a `w_scale` to w / scale (per row for int8, see above)."""
    out = {}
    for name, value in raw.items():
        if name.endswith("_scale") and name[: -len("_scale")] in raw:
            continue
        if name.endswith("_zero") and name[: -len("_zero")] in raw:
            raise InputError(f"{name}: zero-point (AWQ) quantization is not supported")
        scale = raw.get(name + "_scale")
        if scale is not None and value.dtype.kind == "i":
            scale = scale.astype(np.float32)
            if scale.ndim == 1:  # one per output row: [out] -> [out, 1, ...]
                scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
            value = value.astype(np.float32) / scale
        elif value.dtype.kind == "f":
            value = value.astype(np.float32)
        out[name] = value
    return out


# ----------------------------------------------------------------------- Whisper's encoder


def whisper_encoder_from_ct2(path: str | Path) -> nn.Module:
    """A `transformers` `WhisperEncoder` (float32, eval mode) with the encoder weights of a
    CTranslate2 Whisper folder (e.g. the packaged tiny.en, or any faster-whisper model).

    The sizes come from the weights' shapes and `encoder/num_heads`; only the encoder fields of
    the returned config are meaningful. CTranslate2 fuses the self-attention's q, k and v into
    one linear (`linear_0`); it is split, and its key bias (zeros from the converter; a constant
    key bias shifts every score of a query alike, which softmax ignores) is dropped, since
    Whisper's k_proj has none. A variable that this mapping does not know is an error rather
    than silently ignored.
    """
    import torch
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    file = _model_file(path)
    _, spec, _ = read_ct2_header(file)
    if spec != "WhisperSpec":
        raise InputError(f"{path}: a CTranslate2 {spec or 'version-1'} model, not Whisper")
    variables = read_ct2_variables(file, "encoder/")
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        key = "encoder/" + name
        if key not in variables:
            raise InputError(f"{path}: the Whisper encoder has no {key}")
        used.add(key)
        return variables[key]

    conv1 = take("conv1/weight")
    d_model, n_mels = conv1.shape[:2]
    layers = sorted({int(m.group(1)) for name in variables
                     if (m := re.match(r"encoder/layer_(\d+)/", name))})
    if layers != list(range(len(layers))):
        raise InputError(f"{path}: encoder layers {layers} are not numbered 0..n-1")
    heads = variables.get("encoder/num_heads")
    heads = 8 if heads is None else int(heads)  # CTranslate2's default
    used.add("encoder/num_heads")
    positions = take("position_encodings/encodings")
    ffn = variables["encoder/layer_0/ffn/linear_0/weight"].shape[0] if layers else 4 * d_model
    config = WhisperConfig(
        d_model=int(d_model), encoder_layers=len(layers), encoder_attention_heads=heads,
        encoder_ffn_dim=int(ffn), num_mel_bins=int(n_mels),
        max_source_positions=int(positions.shape[0]), activation_function="gelu",
    )
    state = {
        "conv1.weight": conv1, "conv1.bias": take("conv1/bias"),
        "conv2.weight": take("conv2/weight"), "conv2.bias": take("conv2/bias"),
        "embed_positions.weight": positions,
        "layer_norm.weight": take("layer_norm/gamma"), "layer_norm.bias": take("layer_norm/beta"),
    }
    head_dim = d_model // heads
    for i in layers:
        ct2, hf = f"layer_{i}/", f"layers.{i}."
        qkv, qkv_bias = take(ct2 + "self_attention/linear_0/weight"), take(
            ct2 + "self_attention/linear_0/bias")
        if qkv.shape != (3 * d_model, d_model):
            raise InputError(f"{path}: layer {i}'s fused q/k/v weight is {qkv.shape}, "
                             f"not {(3 * d_model, d_model)}")
        q, k, v = np.split(qkv, 3)
        q_bias, _, v_bias = np.split(qkv_bias, 3)
        scale_key = "encoder/" + ct2 + "self_attention/queries_scale"
        if scale_key in variables:  # a non-default query scale, folded into q_proj
            used.add(scale_key)
            factor = float(variables[scale_key]) * head_dim**0.5
            q, q_bias = q * factor, q_bias * factor
        state |= {
            hf + "self_attn.q_proj.weight": q, hf + "self_attn.q_proj.bias": q_bias,
            hf + "self_attn.k_proj.weight": k,
            hf + "self_attn.v_proj.weight": v, hf + "self_attn.v_proj.bias": v_bias,
            hf + "self_attn.out_proj.weight": take(ct2 + "self_attention/linear_1/weight"),
            hf + "self_attn.out_proj.bias": take(ct2 + "self_attention/linear_1/bias"),
            hf + "self_attn_layer_norm.weight": take(ct2 + "self_attention/layer_norm/gamma"),
            hf + "self_attn_layer_norm.bias": take(ct2 + "self_attention/layer_norm/beta"),
            hf + "fc1.weight": take(ct2 + "ffn/linear_0/weight"),
            hf + "fc1.bias": take(ct2 + "ffn/linear_0/bias"),
            hf + "fc2.weight": take(ct2 + "ffn/linear_1/weight"),
            hf + "fc2.bias": take(ct2 + "ffn/linear_1/bias"),
            hf + "final_layer_norm.weight": take(ct2 + "ffn/layer_norm/gamma"),
            hf + "final_layer_norm.bias": take(ct2 + "ffn/layer_norm/beta"),
        }
    unknown = sorted(set(variables) - used)
    if unknown:
        raise InputError(f"{path}: encoder variables this conversion does not know: {unknown}")
    encoder = WhisperEncoder(config)
    tensors = {name: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
               for name, value in state.items()}
    try:
        encoder.load_state_dict(tensors, strict=True)
    except RuntimeError as error:  # shapes that do not fit the sizes read above
        raise InputError(f"{path}: the encoder weights do not fit a Whisper encoder: "
                         f"{error}") from None
    return encoder.eval()

