"""Manifests: one JSON line per audio file (path, duration, sample_rate, group, split, ...).

Paths in a manifest are relative to the manifest's own folder (absolute paths are allowed), so a
corpus folder can be moved or copied as a whole. `group` is the unit that splits respect (a
speaker, a piece): no group is ever in two splits.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segue.config import cache_dir, write_atomic
from segue.errors import InputError

MANIFEST_NAME = "manifest.jsonl"
#: The splits `segue data split` makes, and the name that selects every file.
SPLIT_NAMES = ("train", "valid", "test")
ALL_SPLITS = "all"
_CORE_FIELDS = ("path", "duration", "sample_rate", "group", "split")


class ManifestError(InputError):
    """A manifest or split file that is missing or malformed."""


@dataclass
class ManifestEntry:
    """One audio file. `path` is as written in the manifest; `resolve` makes it usable."""

    path: str
    duration: float
    sample_rate: int
    group: str
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    line: int = field(default=0, compare=False)  # its line in the manifest file (0: none)

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "path": self.path,
            "duration": self.duration,
            "sample_rate": self.sample_rate,
            "group": self.group,
        }
        if self.split is not None:
            record["split"] = self.split
        record.update(self.extra)
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> ManifestEntry:
        extra = {k: v for k, v in record.items() if k not in _CORE_FIELDS}
        duration = float(record["duration"])
        if not (math.isfinite(duration) and duration > 0):
            raise InputError(f"duration must be a positive number of seconds, got {duration}")
        sample_rate = int(record.get("sample_rate", 0))
        if sample_rate < 0:
            raise InputError(f"sample_rate must be >= 0 (0: unknown), got {sample_rate}")
        return cls(
            path=str(record["path"]),
            duration=duration,
            sample_rate=sample_rate,
            group=str(record.get("group", "")),
            split=record.get("split"),
            extra=extra,
        )


@dataclass
class Manifest:
    """The entries of a manifest file plus the folder their relative paths start from."""

    root: Path
    entries: list[ManifestEntry]
    source: Path | None = None  # the manifest file, for messages

    def where(self, entry: ManifestEntry) -> str:
        """`manifest.jsonl:12` (or the entry's path when the manifest has no file)."""
        return f"{self.source}:{entry.line}" if self.source and entry.line else entry.path

    def resolve(self, entry: ManifestEntry) -> Path:
        return Path(entry.path) if os.path.isabs(entry.path) else self.root / entry.path

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    @property
    def seconds(self) -> float:
        return sum(e.duration for e in self.entries)

    @property
    def groups(self) -> list[str]:
        return sorted({e.group for e in self.entries})

    def subset(self, split: str) -> Manifest:
        """Only the entries of one split ("train", "valid" or "test")."""
        return Manifest(self.root, [e for e in self.entries if e.split == split], self.source)


def beside(manifest_path: str | os.PathLike, suffix: str) -> Path:
    """`DIR/name.jsonl` -> `DIR/name<suffix>`: a file that goes with a manifest."""
    path = Path(manifest_path)
    return path.with_name(path.name.removesuffix(".jsonl") + suffix)


def splits_path_for(manifest_path: str | os.PathLike) -> Path:
    """`DIR/name.jsonl` -> `DIR/name.splits.json`, the split file that goes with a manifest."""
    return beside(manifest_path, ".splits.json")


def write_manifest(path: str | os.PathLike, entries: Iterable[ManifestEntry]) -> None:
    """Write entries as JSON lines, atomically, sorted by path for stable diffs."""
    lines = [
        json.dumps(e.to_json(), ensure_ascii=False) for e in sorted(entries, key=lambda e: e.path)
    ]
    write_atomic(path, ("\n".join(lines) + ("\n" if lines else "")).encode())


def read_manifest(path: str | os.PathLike, split: str | None = None) -> Manifest:
    """Read a manifest; with `split`, keep that split only ("all", like None: every entry; a
    name that is neither train/valid/test nor a split of the manifest is refused).

    Entries without a `split` field take it from the split file beside the manifest
    (`name.splits.json`) when one exists.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = ManifestEntry.from_json(json.loads(line))
            entry.line = number
            entries.append(entry)
        except (ValueError, KeyError, TypeError) as error:
            raise ManifestError(f"{path}:{number}: bad manifest line ({error})") from error
    splits_file = splits_path_for(path)
    if splits_file.is_file() and any(e.split is None for e in entries):
        assignment = {g: s for s, groups in read_splits(splits_file).items() for g in groups}
        for entry in entries:
            if entry.split is None:
                entry.split = assignment.get(entry.group)
    manifest = Manifest(path.parent, entries, path)
    if split is not None and split != ALL_SPLITS:
        if all(e.split is None for e in entries):
            raise ManifestError(
                f"{path}: no split information (run `segue data split {path}` first)"
            )
        named = {e.split for e in entries if e.split is not None}
        if split not in named | set(SPLIT_NAMES):
            raise ManifestError(
                f"{path}: no split {split!r} (it has {', '.join(sorted(named))}; "
                f"{ALL_SPLITS!r} for every file)"
            )
        manifest = manifest.subset(split)
    return manifest


def write_splits(path: str | os.PathLike, groups: dict[str, list[str]]) -> None:
    seen: dict[str, str] = {}
    for split, names in groups.items():
        for name in names:
            if name in seen:
                raise ManifestError(f"group {name!r} is in both {seen[name]} and {split}")
            seen[name] = split
    write_atomic(path, (json.dumps(groups, indent=1, sort_keys=True) + "\n").encode())


def read_splits(path: str | os.PathLike) -> dict[str, list[str]]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ManifestError(f"{path}: cannot read split file ({error})") from error
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ManifestError(f"{path}: split file must map split names to lists of groups")
    return data


def describe(manifest: Manifest) -> str:
    """A small table: files, hours, groups and file durations per split."""
    if not manifest.entries:
        return "empty manifest"
    rows = [("split", "files", "hours", "groups", "min s", "mean s", "max s")]
    splits = sorted({e.split or "-" for e in manifest.entries}, key=lambda s: (s != "train", s))
    for name in [*splits, "all"] if len(splits) > 1 else splits:
        chosen = [e for e in manifest.entries if name == "all" or (e.split or "-") == name]
        durations = [e.duration for e in chosen]
        rows.append(
            (
                name,
                str(len(chosen)),
                f"{sum(durations) / 3600:.3f}",
                str(len({e.group for e in chosen})),
                f"{min(durations):.2f}",
                f"{sum(durations) / len(durations):.2f}",
                f"{max(durations):.2f}",
            )
        )
    rates = sorted({e.sample_rate for e in manifest.entries})
    return _table(rows) + f"\nsample rates: {rates}"


def _table(rows: list[tuple[str, ...]], left: int = 0) -> str:
    """Rows of cells as aligned text columns, the first `left` columns left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i < left else cell.rjust(w)
                  for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    )


#: Fields that `describe_by` tabulates when a manifest's rows have them.
BREAKDOWN_FIELDS = ("part", "source", "language", "group")


def describe_by(manifest: Manifest, field: str) -> str:
    """Files, hours, groups and splits per value of `field` (a core field such as `group` or
    an extra such as `source`), most hours first; "" when no row has the field."""
    rows: dict[str, list[ManifestEntry]] = {}
    for entry in manifest.entries:
        value = getattr(entry, field, None) if field in _CORE_FIELDS else entry.extra.get(field)
        if value is not None and value != "":
            rows.setdefault(str(value), []).append(entry)
    if not rows:
        return ""
    table = [(field, "files", "hours", "groups", "splits")]
    for value, entries in sorted(rows.items(), key=lambda kv: -sum(e.duration for e in kv[1])):
        splits = sorted({e.split or "-" for e in entries}, key=lambda s: (s != "train", s))
        table.append(
            (
                value,
                str(len(entries)),
                f"{sum(e.duration for e in entries) / 3600:.3f}",
                str(len({e.group for e in entries})),
                ",".join(splits),
            )
        )
    if field == "group":  # one group per row: the groups column says nothing
        table = [row[:3] + row[4:] for row in table]
    return _table(table, left=1)


CHECKED_FILES = "checked-files.json"  # in segue's cache folder: {path: [mtime_ns, size]}


def _read_checked(path: Path) -> dict[str, list[int]]:
    try:
        checked = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: everything is checked again
    return checked if isinstance(checked, dict) else {}


def check_files(
    manifest: Manifest, *, skip_missing: bool = False, workers: int = 8
) -> tuple[Manifest, list[str]]:
    """Every file of `manifest` opened (headers only, in parallel) before a training relies on
    them: (the manifest, the problems as `manifest.jsonl:LINE: path: why`).

    Files found good are remembered by modification time and size (`checked-files.json` in
    segue's cache folder), so a file that has not changed since is not opened again at the next
    start. With skip_missing the unusable rows are dropped and listed; otherwise ManifestError
    names the first ones (a training would die at the first batch that reached one).
    """
    from concurrent.futures import ThreadPoolExecutor

    from segue import audio as audio_io

    cache = cache_dir() / CHECKED_FILES
    checked = _read_checked(cache)
    newly: dict[str, list[int]] = {}

    def problem(entry: ManifestEntry) -> str | None:
        path = manifest.resolve(entry)
        try:
            stat = os.stat(path)
            stamp = [stat.st_mtime_ns, stat.st_size]
        except OSError:
            stamp = None  # audio_io.info says why
        key = str(Path(path).absolute())
        if stamp is not None and checked.get(key) == stamp:
            return None
        try:
            audio_io.info(path)
        except audio_io.AudioError as error:
            return f"{manifest.where(entry)}: {error}"
        if stamp is not None:
            newly[key] = stamp
        return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        problems = list(pool.map(problem, manifest.entries))
    if newly:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache, json.dumps({**_read_checked(cache), **newly}).encode())
        except OSError:
            pass  # a read-only cache folder only costs the next start a full check
    bad = [p for p in problems if p is not None]
    if bad and not skip_missing:
        shown = "\n  ".join(bad[:5]) + (f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ManifestError(
            f"{len(bad)} unusable file(s) in {manifest.source or manifest.root}:\n  {shown}\n"
            "fix the manifest, or set data.skip_missing=true to train without them"
        )
    kept = [e for e, p in zip(manifest.entries, problems) if p is None]
    return Manifest(manifest.root, kept, manifest.source), bad
