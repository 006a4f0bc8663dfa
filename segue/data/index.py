"""`segue data index`: scan a folder of audio into a manifest, robustly and incrementally.

Every file with an audio extension is opened (in parallel) and decoded completely, which catches
empty, non-audio, truncated and NaN/inf files before a training run trips over them
(`verify=False` only reads the header and the last frames: much faster, misses NaN inside a file).
Bad files are skipped and reported, never fatal. Re-running on the same folder only opens files
that are new or changed since the last scan.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from segue import audio as audio_io
from segue.config import write_atomic
from segue.data.manifest import ManifestEntry, beside, read_manifest, write_manifest
from segue.errors import InputError

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf"}
)
#: Named ways to derive `group` from a file's path relative to the scanned folder.
GROUP_PRESETS = {
    "parent": r"^(?:.*/)?(?P<group>[^/]+)/[^/]+$",  # the folder the file is in
    "grandparent": r"^(?:.*/)?(?P<group>[^/]+)/[^/]+/[^/]+$",  # the folder above that
    "top": r"^(?P<group>[^/]+)/",  # first folder, e.g. LibriSpeech's speaker/chapter/utt.flac
    "librispeech": r"^(?P<group>[^/]+)/[^/]+/[^/]+$",
    "file": r"^(?P<group>.+?)(?:\.[^./]+)?$",  # every file its own group
}
_TAIL_SECONDS = 0.05


@dataclass
class IndexSummary:
    manifest: Path
    indexed: int
    new: int
    reused: int
    seconds: float
    groups: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def report(self, limit: int = 20) -> str:
        lines = [
            f"{self.manifest}: {self.indexed} files ({self.new} new, {self.reused} unchanged), "
            f"{self.seconds / 3600:.3f} h, {self.groups} groups",
            f"skipped {len(self.skipped)} unreadable file(s)" + (":" if self.skipped else ""),
        ]
        lines += [f"  {path}: {reason}" for path, reason in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        if self.ignored:
            shown = ", ".join(self.ignored[:5]) + (" ..." if len(self.ignored) > 5 else "")
            lines.append(f"ignored {len(self.ignored)} file(s) without an audio extension: {shown}")
        return "\n".join(lines)


def group_function(pattern: str) -> Callable[[str], str]:
    """A preset name or a regex with a `(?P<group>...)` group -> f(relative posix path) -> group.

    Paths the pattern does not match fall back to the parent folder name ("." at top level).
    """
    try:
        regex = re.compile(GROUP_PRESETS.get(pattern, pattern))
    except re.error as error:
        raise InputError(f"group pattern {pattern!r} is not a valid regex ({error})") from None
    if "group" not in regex.groupindex:
        raise InputError(f"group pattern {pattern!r} needs a named group (?P<group>...)")

    def group_of(relpath: str) -> str:
        match = regex.search(relpath)
        if match and match.group("group"):
            return match.group("group")
        parent = Path(relpath).parent.name
        return parent or "."

    return group_of


def probe(path: str, verify: bool = False) -> tuple[dict | None, str | None]:
    """Check one file: ({sample_rate, num_frames, channels, duration}, None) or (None, why)."""
    try:
        meta = audio_io.info(path)
        if verify:
            audio_io.load(path)
        else:
            tail = max(0.0, meta.duration - _TAIL_SECONDS)
            with sf.SoundFile(path) as handle:
                start = int(tail * meta.sample_rate)
                handle.seek(start)
                data = handle.read(meta.num_frames - start, dtype="float32")
            if len(data) < meta.num_frames - start:
                raise audio_io.AudioError(path, "truncated: fewer frames than the header says")
            if not np.isfinite(data).all():
                raise audio_io.AudioError(path, "contains NaN or infinite samples")
    except audio_io.AudioError as error:
        return None, error.cause
    except Exception as error:  # a library error on a broken file is a skip, not a crash
        return None, f"{type(error).__name__}: {error}"
    return {
        "sample_rate": meta.sample_rate,
        "num_frames": meta.num_frames,
        "channels": meta.channels,
        "duration": round(meta.duration, 4),
    }, None


def _probe_job(args: tuple[str, bool]) -> tuple[dict | None, str | None]:
    return probe(*args)


def _unchanged(record: dict, stat: os.stat_result) -> bool:
    """The file has the size and mtime recorded at the last scan."""
    return record.get("size") == stat.st_size and record.get("mtime") == stat.st_mtime


def _unreadable(path: Path, root: Path, error: OSError) -> dict:
    """The skip record of a file that cannot even be stat'ed (no size/mtime: retried next scan)."""
    reason = "broken symbolic link" if path.is_symlink() else f"cannot stat ({error.strerror})"
    return {"abspath": str(path), "path": path.relative_to(root).as_posix(), "reason": reason}


def skipped_path_for(manifest_path: Path) -> Path:
    return beside(manifest_path, ".skipped.jsonl")


def _previous_scan(out: Path, skipped_file: Path) -> tuple[dict, dict]:
    """What an earlier scan into `out` knows, by absolute path: (manifest entries, skip records),
    each valid while the file's size and mtime are unchanged."""
    known: dict[str, ManifestEntry] = {}
    if out.is_file():
        previous = read_manifest(out)
        for entry in previous:
            known[str(previous.resolve(entry).resolve())] = entry
    known_bad: dict[str, dict] = {}
    if skipped_file.is_file():
        for line in skipped_file.read_text().splitlines():
            record = json.loads(line)
            known_bad[record["abspath"]] = record
    return known, known_bad


def _candidates(root: Path, out: Path, all_files: bool) -> tuple[list[Path], list[str]]:
    """The files under `root` to index, in a stable order, and those ignored (no audio
    extension). Hidden files and folders, the manifest and its side files are left out."""
    own_prefix = out.name.removesuffix(".jsonl") + "."
    candidates, ignored = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or (path.parent == out.parent and name.startswith(own_prefix)):
                continue
            if all_files or path.suffix.lower() in AUDIO_EXTENSIONS:
                candidates.append(path)
            else:
                ignored.append(str(path.relative_to(root)))
    return candidates, ignored


Probe = tuple[dict | None, str | None]  # (metadata, None) or (None, why the file is skipped)


def _probe_all(paths: list[Path], verify: bool, workers: int) -> list[Probe]:
    """`probe` every file, in `workers` processes when there are enough files, with a bar."""
    jobs = [(str(p), verify) for p in paths]
    results = []
    with tqdm(total=len(jobs), desc="indexing", unit="file", dynamic_ncols=True) as bar:
        if workers > 1 and len(jobs) > 8:
            with ProcessPoolExecutor(workers) as pool:
                for result in pool.map(_probe_job, jobs, chunksize=16):
                    results.append(result)
                    bar.update()
        else:
            for job in jobs:
                results.append(_probe_job(job))
                bar.update()
    return results


def index_directory(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    group: str = "parent",
    workers: int | None = None,
    verify: bool = True,
    all_files: bool = False,
) -> IndexSummary:
    """Scan `root` recursively and write the manifest `out` (paths relative to `out`'s folder).

    Args:
        group: a GROUP_PRESETS name or a regex with (?P<group>...) over the relative path.
        verify: decode every file completely (False: header and last frames only).
        all_files: try every file, not only those with an audio extension.
    """
    root, out = Path(root).resolve(), Path(out).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    group_of = group_function(group)
    skipped_file = skipped_path_for(out)
    known, known_bad = _previous_scan(out, skipped_file)
    candidates, ignored = _candidates(root, out, all_files)

    # Files unchanged since the last scan keep their entry (or their skip record).
    entries: list[ManifestEntry] = []
    bad: list[dict] = []
    to_probe: list[Path] = []
    for path in candidates:
        try:
            stat = path.stat()
        except OSError as error:  # a broken link, a file gone meanwhile: skipped and listed
            bad.append(_unreadable(path, root, error))
            continue
        key = str(path)
        entry = known.get(key)
        if entry and _unchanged(entry.extra, stat):
            entry.group = group_of(path.relative_to(root).as_posix())
            entries.append(entry)
        elif key in known_bad and _unchanged(known_bad[key], stat):
            bad.append(known_bad[key])
        else:
            to_probe.append(path)
    reused = len(entries)

    results = _probe_all(to_probe, verify, workers or os.cpu_count() or 1)
    for path, (meta, reason) in zip(to_probe, results):
        try:
            stat = path.stat()
        except OSError as error:
            bad.append(_unreadable(path, root, error))
            continue
        rel_to_root = path.relative_to(root).as_posix()
        if meta is None:
            bad.append({"abspath": str(path), "path": rel_to_root, "reason": reason,
                        "size": stat.st_size, "mtime": stat.st_mtime})  # fmt: skip
            continue
        extra = {"channels": meta["channels"], "num_frames": meta["num_frames"],
                 "size": stat.st_size, "mtime": stat.st_mtime}  # fmt: skip
        entries.append(
            ManifestEntry(
                path=os.path.relpath(path, out.parent),
                duration=meta["duration"],
                sample_rate=meta["sample_rate"],
                group=group_of(rel_to_root),
                extra=extra,
            )
        )

    write_manifest(out, entries)
    bad.sort(key=lambda r: r["path"])
    write_atomic(skipped_file, "".join(json.dumps(r) + "\n" for r in bad).encode())
    return IndexSummary(
        manifest=out,
        indexed=len(entries),
        new=len(entries) - reused,
        reused=reused,
        seconds=sum(e.duration for e in entries),
        groups=len({e.group for e in entries}),
        skipped=[(r["path"], r["reason"]) for r in bad],
        ignored=ignored,
    )
