"""Atomic, verified, rotating checkpoint directories.

Layout under a run's `checkpoints/` folder:

    step_000123/
        <module>.safetensors        weights, one file per named module (and <module>.ema...)
        optim.pt, state.pt, ...     any picklable objects (torch.save, loaded weights_only)
        config.json                 the run config
        manifest.json               size and sha256 of every file above; written last
    latest                          text file naming the newest complete checkpoint

A checkpoint is written into a hidden temporary folder, every file fsync'ed, then renamed into
place, and only then is `latest` replaced (atomically). A crash at any point leaves the previous
checkpoint and `latest` intact. Loading verifies the manifest and, if the newest checkpoint is
damaged, warns and falls back to the one before.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from segue.config import write_atomic
from segue.errors import StateError
from segue.pretrained import CHECKPOINT_DIR, is_run_checkpoint

LATEST = "latest"
MANIFEST = "manifest.json"


class CheckpointError(StateError):
    """A checkpoint that is missing, incomplete or corrupt."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: weights[name] is a state dict, objects[name] what was saved."""

    path: Path
    step: int
    weights: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> dict[str, Any]:
    """Write and fsync one file; return its manifest record."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _tensor_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """Safetensors bytes of a state dict; tensors sharing storage (tied weights) are copied."""
    seen: set[tuple[int, int]] = set()
    clean = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"weight {key!r} is a {type(value).__name__}, not a tensor")
        tensor = value.detach().to("cpu").contiguous()
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if ident in seen or tensor.untyped_storage().nbytes() != tensor.nbytes:
            tensor = tensor.clone()
        seen.add((tensor.untyped_storage().data_ptr(), tensor.storage_offset()))
        clean[key] = tensor
    return save_safetensors(clean)


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete-looking checkpoint folders under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = CHECKPOINT_DIR.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The folder `latest` names, else the newest step folder, else None."""
    root = Path(root)
    pointer = root / LATEST
    if pointer.is_file():
        name = pointer.read_text().strip()
        if CHECKPOINT_DIR.match(name) and (root / name).is_dir():
            return root / name
    found = list_checkpoints(root)
    return found[-1] if found else None


def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    *,
    weights: dict[str, dict[str, torch.Tensor]],
    objects: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write checkpoint `step` atomically, point `latest` at it, keep the newest `keep_last`.

    weights: name -> state dict, saved as `<name>.safetensors`.
    objects: name -> picklable object (tensors, numbers, strings, containers), saved as `<name>.pt`.
    Returns the checkpoint folder.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        records: dict[str, Any] = {}
        for name, state in weights.items():
            records[f"{name}.safetensors"] = _write_bytes(
                tmp / f"{name}.safetensors", _tensor_bytes(state)
            )
        for name, obj in (objects or {}).items():
            buffer = io.BytesIO()
            torch.save(obj, buffer)
            records[f"{name}.pt"] = _write_bytes(tmp / f"{name}.pt", buffer.getvalue())
        if config is not None:
            text = json.dumps(config, indent=2, sort_keys=True) + "\n"
            records["config.json"] = _write_bytes(tmp / "config.json", text.encode())
        manifest = {"step": step, "files": records}
        _write_bytes(tmp / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        _fsync_dir(tmp)
        if final.exists():  # the same step saved again (e.g. resumed, then interrupted at once)
            old = root / f".old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_atomic(root / LATEST, (final.name + "\n").encode())
    _fsync_dir(root)
    if keep_last is not None:
        prune_checkpoints(root, keep_last)
    return final


def prune_checkpoints(root: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints (never the one `latest` names)."""
    keep_last = max(1, keep_last)
    found = list_checkpoints(root)
    current = latest_checkpoint(root)
    removed = []
    for path in found[:-keep_last]:
        if current is not None and path.resolve() == current.resolve():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def clean_temporary(root: str | os.PathLike) -> None:
    """Remove what writes that crashed left: checkpoint folders (`.tmp-*`, `.old-*`) and
    temporary files of the `latest` pointer (`.latest.*.tmp`, from a kill during its write)."""
    root = Path(root)
    if root.is_dir():
        for child in root.iterdir():
            if child.is_dir() and child.name.startswith((".tmp-step_", ".old-step_")):
                shutil.rmtree(child, ignore_errors=True)
            elif child.is_file() and child.name.startswith(f".{LATEST}.") and child.name.endswith(
                ".tmp"
            ):
                child.unlink(missing_ok=True)


def verify_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Check every file against the manifest; return the manifest or raise CheckpointError."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{path}: no {MANIFEST} (incomplete checkpoint)")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        int(manifest["step"])
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: unreadable {MANIFEST} ({error})") from error
    for name, record in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{path}: missing file {name}")
        data = file.read_bytes()
        if len(data) != record["size"]:
            raise CheckpointError(
                f"{path}: {name} has {len(data)} bytes, expected {record['size']} (truncated?)"
            )
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise CheckpointError(f"{path}: {name} does not match its checksum (corrupt)")
    return manifest


def load_checkpoint(path: str | os.PathLike, *, verify: bool = True) -> Checkpoint:
    """Load one checkpoint folder (verifying it first unless `verify=False`)."""
    path = Path(path)
    manifest = verify_checkpoint(path) if verify else json.loads((path / MANIFEST).read_text())
    checkpoint = Checkpoint(path=path, step=int(manifest["step"]))
    try:
        for name in manifest["files"]:
            file = path / name
            if name.endswith(".safetensors"):
                checkpoint.weights[name[: -len(".safetensors")]] = load_safetensors(
                    file.read_bytes()
                )
            elif name.endswith(".pt"):
                checkpoint.objects[name[: -len(".pt")]] = torch.load(
                    file, map_location="cpu", weights_only=True
                )
            elif name == "config.json":
                checkpoint.config = json.loads(file.read_text())
    except Exception as error:  # any parse failure means a corrupt checkpoint
        raise CheckpointError(f"{path}: cannot load {name} ({error})") from error
    return checkpoint


def find_valid_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest checkpoint that passes verification, starting from `latest`.

    A damaged one is skipped with a warning naming it and the one used instead. Returns None
    when there is no checkpoint at all; raises CheckpointError when all of them are damaged.
    """
    root = Path(root)
    candidates = list_checkpoints(root)
    if not candidates:
        return None
    latest = latest_checkpoint(root)
    ordered = candidates[::-1]  # newest first, but the one `latest` names before all
    if latest in ordered:
        ordered.remove(latest)
        ordered.insert(0, latest)
    errors = []
    for path in ordered:
        try:
            verify_checkpoint(path)
        except CheckpointError as error:
            errors.append(str(error))
            continue
        if errors:
            warnings.warn(
                f"checkpoint(s) damaged, resuming from {path.name} instead: " + "; ".join(errors),
                RuntimeWarning,
                stacklevel=2,
            )
        return path
    raise CheckpointError(f"{root}: no usable checkpoint: " + "; ".join(errors))


def load_latest(root: str | os.PathLike) -> Checkpoint | None:
    """Load the newest valid checkpoint under `root` (see `find_valid_checkpoint`)."""
    path = find_valid_checkpoint(root)
    return None if path is None else load_checkpoint(path)


def load_run_weights(
    run_dir: str | os.PathLike, name: str, *, prefer_ema: bool = True, what: str = "training"
) -> tuple[dict, dict]:
    """(run config dict, weights of module `name`) from the newest valid checkpoint of a run
    folder, or from the one checkpoint `run_dir` names (`RUN/checkpoints/step_N`, verified);
    the EMA copy (`name.ema`) when there is one and `prefer_ema`."""
    run_dir = Path(run_dir)
    if is_run_checkpoint(run_dir):
        checkpoint = load_checkpoint(run_dir)
    else:
        checkpoint = load_latest(run_dir / "checkpoints")
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint yet (is it a {what} run folder?)")
    if name not in checkpoint.weights:
        raise FileNotFoundError(f"{run_dir}: the checkpoint holds no {name!r} weights")
    key = f"{name}.ema" if prefer_ema and f"{name}.ema" in checkpoint.weights else name
    return checkpoint.config, checkpoint.weights[key]


def read_run_config(run_dir: str | os.PathLike, *, what: str = "training") -> dict:
    """The run config (a dict) of a run folder with checkpoints, without reading any weights:
    its config.json. The trainer writes it at every checked start, and a resume that changes
    the model is refused before it, so its model is the one every checkpoint holds. For one
    checkpoint (`RUN/checkpoints/step_N`), the config.json it holds."""
    run_dir = Path(run_dir)
    if is_run_checkpoint(run_dir):
        if not (run_dir / MANIFEST).is_file():
            raise CheckpointError(f"{run_dir}: no {MANIFEST} (incomplete checkpoint)")
    elif not list_checkpoints(run_dir / "checkpoints"):
        raise FileNotFoundError(f"{run_dir}: no checkpoint yet (is it a {what} run folder?)")
    path = run_dir / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StateError(f"{path}: cannot read the run's config ({error})") from error
