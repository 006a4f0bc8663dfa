"""Token shards: a whole manifest turned into token arrays that LM training reads by memory map.

Layout of a shard folder:
    meta.json                 kind ("acoustic" | "semantic"), levels, vocab_size, frame_rate, ...
    shard_r{rank}_{n}.npy     uint16/int32 [frames, levels], utterances concatenated in time
    index.r{rank}.jsonl       one line per utterance: key, shard, offset, frames, group, split,
                              duration, and anything else the manifest line carried
    index.jsonl               the merged index, written when every rank has finished

Writing is resumable: a shard file is renamed into place before its index lines are appended, so
after a crash every indexed utterance is on disk and the rest is tokenized again. Under torchrun
each rank takes every world-th utterance and writes its own files; no rank waits on another.
The tokenizer is any function `audio [T] float32 -> tokens [levels, frames]`, so the same writer
serves the codec (acoustic tokens) and the semantic tokenizer.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from segue import audio as audio_io
from segue.config import write_atomic
from segue.data.manifest import Manifest
from segue.errors import InputError

META_NAME = "meta.json"
INDEX_NAME = "index.jsonl"
_SHARED = ("shard", "split", "group")  # index fields with few distinct values


class ShardError(InputError):
    """A shard folder that is missing, incomplete or inconsistent."""


@dataclass(slots=True)
class ShardEntry:
    """One utterance of the index (slots, shared strings: a million of them stay small)."""

    key: str
    shard: str
    offset: int
    frames: int
    info: dict[str, Any]

    @property
    def split(self) -> str | None:
        return self.info.get("split")


def _dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


class TokenShardWriter:
    """Appends utterances' tokens to shard files of about `shard_frames` frames."""

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        kind: str,
        levels: int,
        vocab_size: int,
        frame_rate: float,
        rank: int = 0,
        world_size: int = 1,
        shard_frames: int = 1 << 20,
        extra_meta: dict[str, Any] | None = None,
    ):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.meta = {
            "kind": kind,
            "levels": levels,
            "vocab_size": vocab_size,
            "frame_rate": frame_rate,
            "world_size": world_size,
            **(extra_meta or {}),
        }
        meta_path = self.out / META_NAME
        if meta_path.exists():
            previous = json.loads(meta_path.read_text())
            if previous != self.meta:
                raise ShardError(
                    f"{self.out}: existing shards were written with {previous}, "
                    f"not {self.meta}; use another folder"
                )
        elif rank == 0:
            write_atomic(meta_path, (json.dumps(self.meta, indent=1) + "\n").encode())
        self.rank, self.dtype, self.levels = rank, _dtype_for(vocab_size), levels
        self.shard_frames = shard_frames
        self.index_path = self.out / f"index.r{rank}.jsonl"
        self.done: set[str] = set()
        existing = sorted(self.out.glob(f"shard_r{rank}_*.npy"))
        self.next_shard = 1 + max((int(p.stem.rsplit("_", 1)[1]) for p in existing), default=-1)
        if self.index_path.exists():
            # Keep the complete lines; a line cut by a crash is dropped and its file redone.
            valid = []
            for line in self.index_path.read_text().splitlines():
                try:
                    self.done.add(json.loads(line)["key"])
                    valid.append(line)
                except (ValueError, KeyError):
                    continue
            write_atomic(self.index_path, "".join(line + "\n" for line in valid).encode())
        self._pending: list[tuple[str, np.ndarray, dict[str, Any]]] = []
        self._pending_frames = 0

    def add(self, key: str, tokens: np.ndarray, info: dict[str, Any]) -> None:
        """Queue tokens [levels, frames] of one utterance; flushes a shard when it is full."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[0] != self.levels:
            raise ShardError(f"{key}: expected tokens [{self.levels}, frames], got {tokens.shape}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.meta["vocab_size"]):
            raise ShardError(f"{key}: token ids outside [0, {self.meta['vocab_size']})")
        self._pending.append((key, np.ascontiguousarray(tokens.T, dtype=self.dtype), info))
        self._pending_frames += tokens.shape[1]
        if self._pending_frames >= self.shard_frames:
            self.flush()

    def flush(self) -> None:
        """Write queued utterances as one shard file, then index them."""
        if not self._pending:
            return
        name = f"shard_r{self.rank}_{self.next_shard:05d}.npy"
        data = np.concatenate([tokens for _, tokens, _ in self._pending], axis=0)
        tmp = self.out / f".{name}.tmp"
        with tmp.open("wb") as handle:
            np.save(handle, data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.out / name)
        lines, offset = [], 0
        for key, tokens, info in self._pending:
            lines.append(
                json.dumps(
                    {
                        "key": key,
                        "shard": name,
                        "offset": offset,
                        "frames": int(tokens.shape[0]),
                        **info,
                    }
                )
            )
            offset += tokens.shape[0]
            self.done.add(key)
        with self.index_path.open("a") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.next_shard += 1
        self._pending, self._pending_frames = [], 0


def merge_index(out_dir: str | os.PathLike) -> Path:
    """Merge every rank's index part into `index.jsonl` (sorted by key)."""
    out = Path(out_dir)
    meta = json.loads((out / META_NAME).read_text())
    lines = []
    for rank in range(meta.get("world_size", 1)):
        part = out / f"index.r{rank}.jsonl"
        if part.exists():
            lines += [line for line in part.read_text().splitlines() if line.strip()]
    records = sorted((json.loads(line) for line in lines), key=lambda r: r["key"])
    write_atomic(out / INDEX_NAME, "".join(json.dumps(r) + "\n" for r in records).encode())
    return out / INDEX_NAME


def tokenize_manifest(
    manifest: Manifest,
    out_dir: str | os.PathLike,
    tokenize: Callable[[np.ndarray], np.ndarray],
    *,
    kind: str,
    levels: int,
    vocab_size: int,
    frame_rate: float,
    sample_rate: int,
    rank: int = 0,
    world_size: int = 1,
    extra_meta: dict[str, Any] | None = None,
    desc: str = "tokenizing",
) -> dict[str, int]:
    """Tokenize every file of `manifest` (this rank's share) into shards; skip finished ones.

    Files that fail to load are skipped and counted. Returns {"done", "skipped", "failed"}.
    """
    writer = TokenShardWriter(
        out_dir,
        kind=kind,
        levels=levels,
        vocab_size=vocab_size,
        frame_rate=frame_rate,
        rank=rank,
        world_size=world_size,
        extra_meta=extra_meta,
    )
    mine = manifest.entries[rank::world_size]
    counts = {"done": 0, "skipped": 0, "failed": 0}
    failures = []
    for entry in tqdm(mine, desc=desc, unit="file", disable=rank != 0, dynamic_ncols=True):
        if entry.path in writer.done:
            counts["skipped"] += 1
            continue
        try:
            audio = audio_io.load(manifest.resolve(entry), sample_rate)
        except audio_io.AudioError as error:
            counts["failed"] += 1
            failures.append(str(error))
            continue
        tokens = tokenize(audio)
        info = {
            "group": entry.group,
            "split": entry.split,
            "duration": entry.duration,
            **entry.extra,
        }
        writer.add(entry.path, tokens, info)
        counts["done"] += 1
    writer.flush()
    for failure in failures[:5]:
        tqdm.write(f"warning: skipped {failure}")
    if rank == 0 and world_size == 1:
        merge_index(out_dir)
    return counts


@dataclass(frozen=True)
class _ShardHeader:
    """Where a shard's rows are: the .npy data offset, dtype, shape and order (shards written
    before C order was asked for are column-major: each level's rows one after another)."""

    offset: int
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran: bool


def _read_header(path: Path) -> _ShardHeader:
    """A .npy file's header, checked against the file's size (a truncated shard: ValueError)."""
    with path.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        offset = handle.tell()
    need = offset + int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size < need:
        raise ValueError(f"{path.stat().st_size} bytes, the header needs {need}")
    return _ShardHeader(offset, dtype, tuple(shape), bool(fortran))


class TokenShards:
    """Read-only view of a shard folder: `shards.tokens(i)` -> [levels, frames].

    Each read takes exactly an utterance's rows from its shard file (no memory map, no file
    kept open): memory stays flat however large the folder (a map's touched pages would count
    towards the process's memory, and thousands of shards would hold thousands of files open).
    """

    def __init__(self, directory: str | os.PathLike, split: str | None = None):
        self.root = Path(directory)
        index = self.root / INDEX_NAME
        if not (self.root / META_NAME).is_file() or not index.is_file():
            raise ShardError(
                f"{self.root}: not a finished token shard folder "
                f"(needs {META_NAME} and {INDEX_NAME})"
            )
        self.meta = json.loads((self.root / META_NAME).read_text())
        self.entries = []
        with index.open() as lines:  # line by line: the index text is never whole in memory
            for line in lines:
                record = json.loads(line)
                if split is not None and record.get("split") != split:
                    continue
                record = {  # field names and a few distinct values (shard, split, group): shared
                    sys.intern(k): sys.intern(v) if k in _SHARED and isinstance(v, str) else v
                    for k, v in record.items()
                }
                self.entries.append(
                    ShardEntry(
                        record.pop("key"),
                        record.pop("shard"),
                        record.pop("offset"),
                        record.pop("frames"),
                        record,
                    )
                )
        self._headers: dict[str, _ShardHeader] = {}
        self._check()

    def _check(self) -> None:
        """Every shard the entries use opens as [rows, levels] and holds their rows: a truncated
        or foreign shard is an error now, naming it, not at the batch that reaches it."""
        rows = {}
        for shard in sorted({e.shard for e in self.entries}):
            try:
                header = self._header(shard)
            except (OSError, ValueError) as error:
                raise ShardError(
                    f"{self.root / shard}: unreadable token shard ({error}); rebuild the folder "
                    "with the tokenize command that made it"
                ) from None
            shape, dtype = header.shape, header.dtype
            if len(shape) != 2 or shape[1] != self.levels or dtype.kind not in "iu":
                raise ShardError(
                    f"{self.root / shard}: {dtype} {shape}, expected integer tokens "
                    f"[rows, {self.levels}] ({META_NAME} says {self.levels} levels)"
                )
            rows[shard] = shape[0]
        for entry in self.entries:
            end, have = entry.offset + entry.frames, rows[entry.shard]
            if entry.offset < 0 or entry.frames < 0 or end > have:
                raise ShardError(
                    f"{self.root / INDEX_NAME}: {entry.key} needs rows [{entry.offset}, {end}) "
                    f"of {entry.shard}, which has {have}"
                )

    @property
    def levels(self) -> int:
        return int(self.meta["levels"])

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    def __len__(self) -> int:
        return len(self.entries)

    def _header(self, shard: str) -> _ShardHeader:
        if shard not in self._headers:
            self._headers[shard] = _read_header(self.root / shard)
        return self._headers[shard]

    def tokens(self, index: int) -> np.ndarray:
        """Tokens of utterance `index`: [levels, frames] int64."""
        entry = self.entries[index]
        header = self._header(entry.shard)
        (total, levels), size = header.shape, header.dtype.itemsize
        with (self.root / entry.shard).open("rb") as handle:
            if not header.fortran:  # the rows, one read
                handle.seek(header.offset + entry.offset * levels * size)
                rows = np.fromfile(handle, dtype=header.dtype, count=entry.frames * levels)
                return rows.reshape(entry.frames, levels).astype(np.int64).T
            out = np.empty((levels, entry.frames), np.int64)
            for level in range(levels):  # column-major: one read per level
                handle.seek(header.offset + (level * total + entry.offset) * size)
                out[level] = np.fromfile(handle, dtype=header.dtype, count=entry.frames)
            return out

    def total_frames(self) -> int:
        return sum(e.frames for e in self.entries)
