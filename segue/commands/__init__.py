"""The `segue` subcommands, one module per area; `segue.cli` assembles them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from segue.errors import InputError, SegueError


class CommandError(SegueError):
    """A user-facing failure: printed as one line, exit status 2, no traceback."""


def device_arg(text: str) -> str:
    """argparse type of --device: "auto" or a device this machine has."""
    import argparse

    from segue.train.distributed import parse_device

    if text == "auto":
        return text
    try:
        parse_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _whole_number(text: str, minimum: int) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type of counts that must be >= 1 (--threads, --workers)."""
    return _whole_number(text, 1)


def positive_float(text: str) -> float:
    """argparse type of finite amounts that must be > 0 (--silence-db)."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type of counts where 0 means "all" or "none" (--b-per-pair)."""
    return _whole_number(text, 0)


def check_output(
    path: str | Path, suffixes: tuple[str, ...], *inputs: str | None, what: str = "the output"
) -> Path:
    """An output file (`what`, in messages), refused before any compute when its name does not
    end in one of `suffixes`, it is an input of the same command (by inode: links and other
    spellings included; it would be replaced), it is a folder, or it cannot be written."""
    import os

    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise CommandError(f"{out}: {what} must end in {' or '.join(suffixes)}")
    for given in filter(None, inputs):
        try:
            same = out.exists() and Path(given).exists() and os.path.samefile(out, given)
        except OSError:
            same = False
        if same:
            raise CommandError(f"{out}: {what} is the input {given}; write to another file")
    if out.is_dir():
        raise CommandError(f"{out}: {what} is a folder; name a file")
    parent = next(p for p in (out.absolute().parent, *out.absolute().parents) if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise CommandError(f"{out}: cannot write there ({parent} is not a writable folder)")
    if out.exists() and not os.access(out, os.W_OK):
        raise CommandError(f"{out}: the file exists and is not writable")
    return out


#: Token and code arrays on disk; the format follows the file's suffix.
ARRAY_SUFFIXES = (".npy", ".pt", ".safetensors")


def check_array_output(path: str | Path, *inputs: str | None) -> Path:
    """An output of tokens or codes: it must end in .npy, .pt or .safetensors (the format is
    chosen by it, and the file is written exactly there); otherwise as `check_output`."""
    return check_output(path, ARRAY_SUFFIXES, *inputs)


def save_array(path: Path, array: Any) -> None:
    """A NumPy integer array to exactly `path`, in the format its suffix names (a .safetensors
    file holds it under the key "array"), atomically: a temporary file renamed, none left on
    failure."""
    import os

    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            with tmp.open("wb") as handle:
                np.save(handle, array)
        else:
            import torch

            tensor = torch.from_numpy(np.ascontiguousarray(array))
            if suffix == ".pt":
                torch.save(tensor, tmp)
            elif suffix == ".safetensors":
                from safetensors.torch import save_file

                save_file({"array": tensor}, str(tmp))
            else:
                raise CommandError(f"{path}: must end in {' or '.join(ARRAY_SUFFIXES)}")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_array(path: str | Path, what: str = "tokens") -> Any:
    """The NumPy array in a .npy, .pt (one tensor) or .safetensors (one tensor) file."""
    import numpy as np

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise CommandError(f"{path}: {what} must be a {' or '.join(ARRAY_SUFFIXES)} file")
    try:
        if suffix == ".npy":
            return np.load(path)
        import torch

        if suffix == ".pt":
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        else:
            from safetensors.torch import load_file

            tensors = load_file(str(path))
            if len(tensors) != 1:
                raise InputError(f"expected one tensor, found {sorted(tensors)}")
            loaded = next(iter(tensors.values()))
        if not isinstance(loaded, torch.Tensor):
            raise InputError(f"expected a tensor, found {type(loaded).__name__}")
        return loaded.numpy()
    except CommandError:
        raise
    except Exception as error:  # each format fails in its own way on a bad file
        raise CommandError(f"{path}: cannot read {what} ({error})") from error


@contextlib.contextmanager
def torchrun_ranks() -> Iterator[Any]:
    """Join torchrun's process group for a data-parallel job (a no-op in a single process).

    Yields the `DistInfo` (rank, world_size, local_rank); leaves the group on exit.
    """
    import torch

    from segue.train.distributed import init_distributed

    info, created = init_distributed()
    try:
        yield info
    finally:
        if created:
            torch.distributed.destroy_process_group()


def finish_shards(out: str | Path, counts: dict[str, int], info: Any) -> None:
    """After every rank has tokenized its share: rank 0 merges the index and reports."""
    from segue.data.shards import merge_index
    from segue.train.distributed import barrier

    barrier()
    if info.is_main:
        merge_index(out)
        print(
            f"{out}: {counts['done']} tokenized, {counts['skipped']} already done, "
            f"{counts['failed']} unreadable (rank 0's share)"
        )
