"""Parallel, resumable writer of synthetic corpora (16 kHz mono FLAC + manifest + split file).

A corpus builder (speech, piano) supplies two things:
  * a deterministic, possibly endless iterator of `CorpusItem`s (what to render, in order);
  * a picklable `render(item) -> float32 [T]` function (how to render one, at `sample_rate`).
`build_corpus` renders items in order on a process pool until the requested hours are reached.
Each finished item is appended to `DIR/.progress.jsonl` as soon as its FLAC is on disk, so an
interrupted build resumes where it stopped and produces the same corpus as an uninterrupted one.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence, Sized
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm.auto import tqdm

from segue import audio as audio_io
from segue.data.manifest import (
    MANIFEST_NAME,
    SPLIT_NAMES,
    ManifestEntry,
    splits_path_for,
    write_manifest,
    write_splits,
)


@dataclass(frozen=True)
class CorpusItem:
    """One file to render. `uid` must be unique and filesystem-safe; the file lands in
    `DIR/<group>/<uid>.flac`. `meta` (JSON-ready) is copied into the manifest line."""

    uid: str
    group: str
    split: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def relpath(self) -> str:
        return f"{self.group}/{self.uid}.flac"


class RenderError(RuntimeError):
    """A single item could not be rendered; the builder skips it and counts it."""


class SkipItem(RenderError):
    """An item that is not wanted (e.g. a source file that holds no speech): skipped, counted by
    its message (the reason), and remembered, so a resumed build does not render it again."""


@dataclass
class BuildSummary:
    out_dir: Path
    files: int
    seconds: float
    groups: dict[str, int]
    failed: int
    resumed: int
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> items (SkipItem)
    failures: list[str] = field(default_factory=list)  # "uid: error" of the failed items

    def __str__(self) -> str:
        per_split = ", ".join(f"{k}={v}" for k, v in self.groups.items())
        text = (
            f"{self.out_dir}: {self.files} files, {self.seconds / 3600:.3f} h, groups per split: "
            f"{per_split}; {self.failed} item(s) failed to render, {self.resumed} reused"
        )
        if self.skipped:
            reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
            text += f"; skipped {sum(self.skipped.values())} ({reasons})"
        return text


def _render_job(
    render: Callable[[CorpusItem], np.ndarray],
    item: CorpusItem,
    out_dir: str,
    sample_rate: int,
    cached: dict[str, Any] | None,
) -> tuple[CorpusItem, dict[str, Any] | None, str | None]:
    """Worker: render one item and write its FLAC; returns (item, manifest record, error)."""
    if cached is not None and "skipped" in cached:
        return item, cached, None
    if cached is not None and cached.get("path") == item.relpath:
        # The audio is reused; its description follows the item (its split, and meta a builder
        # may have learnt more about since, e.g. a text or an id).
        return item, _record(item, cached["duration"]), None
    path = Path(out_dir) / item.relpath
    try:
        audio = np.asarray(render(item), dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise RenderError(f"renderer returned shape {audio.shape}")
        if not np.isfinite(audio).all():
            raise RenderError("renderer returned NaN/inf samples")
        audio_io.save(path, audio, sample_rate)
    except SkipItem as skip:
        return item, {"uid": item.uid, "skipped": str(skip)}, None
    except Exception as error:  # one bad item must not stop a corpus build
        return item, None, f"{type(error).__name__}: {error}"
    return item, _record(item, round(audio.size / sample_rate, 4)), None


def _record(item: CorpusItem, duration: float) -> dict[str, Any]:
    """The progress/manifest record of a rendered item."""
    return {
        "uid": item.uid,
        "path": item.relpath,
        "duration": duration,
        "group": item.group,
        "split": item.split,
        **item.meta,
    }


def build_corpus(
    out_dir: str | os.PathLike,
    items: Iterable[CorpusItem],
    render: Callable[[CorpusItem], np.ndarray],
    *,
    hours: float | None,
    sample_rate: int = 16000,
    workers: int | None = None,
    desc: str = "rendering",
    max_failures: int | None = 50,
) -> BuildSummary:
    """Render `items` in order into `out_dir` until `hours` of audio exist (`None`: all of the
    items, which must then be finite); write the manifest.

    Output: `DIR/<group>/<uid>.flac`, `DIR/manifest.jsonl` (path relative to DIR, duration,
    group, split, meta fields) and `DIR/manifest.splits.json` (groups per split).
    Re-running with the same arguments reuses everything already rendered, and does not retry
    items the renderer skipped (`SkipItem`); failed items are retried. More than
    `max_failures` failed items stop the build (None: never).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = math.inf if hours is None else hours * 3600.0
    progress_file = out / ".progress.jsonl"
    done: dict[str, dict[str, Any]] = {}
    if progress_file.exists():
        for line in progress_file.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash: that item is simply rendered again
            if "skipped" in record or (out / record["path"]).exists():
                done[record["uid"]] = record
    workers = workers or max(1, os.cpu_count() or 1)
    records: list[dict[str, Any]] = []
    total = 0.0
    failures: list[str] = []
    skipped: dict[str, int] = {}
    resumed = 0
    if hours is None:  # count files: the total is known only for a sized collection
        bar = tqdm(total=len(items) if isinstance(items, Sized) else None, unit="file",
                   desc=desc, dynamic_ncols=True)
    else:
        bar = tqdm(total=round(target, 1), unit="s", desc=desc, dynamic_ncols=True)

    def advance(seconds: float) -> None:
        """One item done: a file on a file bar, its seconds (up to the target) on an hour bar."""
        bar.update(1 if hours is None else min(seconds, bar.total - bar.n))
    ctx = multiprocessing.get_context("spawn" if os.name == "nt" else "fork")
    stream = iter(items)
    in_flight: deque[Future] = deque()
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool, progress_file.open("a") as log:
        # Results are consumed in item order, with a bounded window of jobs in flight, so the
        # corpus is the same whatever the number of workers and however often it was resumed.
        while total < target:
            while len(in_flight) < 4 * workers:
                item = next(stream, None)
                if item is None:
                    break
                in_flight.append(
                    pool.submit(
                        _render_job, render, item, str(out), sample_rate, done.get(item.uid)
                    )
                )
            if not in_flight:
                break  # the item stream ran dry before the target
            item, record, error = in_flight.popleft().result()
            if error is not None:
                failures.append(f"{item.uid}: {error}")
                if max_failures is not None and len(failures) > max_failures:
                    raise RuntimeError(
                        f"{len(failures)} items failed to render; last: {failures[-1]}"
                    )
                advance(0.0)
                continue
            assert record is not None
            if done.get(item.uid) != record:  # new, or its description changed
                log.write(json.dumps(record, ensure_ascii=False) + "\n")
                log.flush()
            if "skipped" in record:
                skipped[record["skipped"]] = skipped.get(record["skipped"], 0) + 1
                advance(0.0)
                continue
            resumed += done.get(item.uid, {}).get("path") == record["path"]  # audio reused
            records.append(record)
            total += record["duration"]
            advance(record["duration"])
        for future in in_flight:
            future.cancel()
    bar.close()
    for failure in failures[:20]:
        tqdm.write(f"warning: skipped {failure}")
    if len(failures) > 20:
        tqdm.write(f"warning: ... and {len(failures) - 20} more failed items")

    entries = [
        ManifestEntry(
            path=r["path"],
            duration=r["duration"],
            sample_rate=sample_rate,
            group=r["group"],
            split=r["split"],
            extra={
                k: v for k, v in r.items() if k not in ("uid", "path", "duration", "group", "split")
            },
        )
        for r in records
    ]
    manifest = out / MANIFEST_NAME
    write_manifest(manifest, entries)
    groups = {s: sorted({e.group for e in entries if e.split == s}) for s in SPLIT_NAMES}
    write_splits(splits_path_for(manifest), groups)
    return BuildSummary(
        out,
        len(entries),
        total,
        {s: len(g) for s, g in groups.items()},
        len(failures),
        resumed,
        skipped,
        failures,
    )


T = TypeVar("T")


def interleave(queues: Sequence[Sequence[T]]) -> list[T]:
    """Every item of `queues`, one of each queue in turn until all are used up, so that any
    prefix of the result spreads over every queue (voices, groups)."""
    depth = max((len(q) for q in queues), default=0)
    return [q[k] for k in range(depth) for q in queues if k < len(q)]


def take(items: Iterable[CorpusItem], n: int) -> list[CorpusItem]:
    """The first n items of an item stream (handy in tests)."""
    return list(itertools.islice(items, n))
