"""The `segue` subcommands, one module per area; `segue.cli` assembles them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class CommandError(Exception):
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


def positive_int(text: str) -> int:
    """argparse type of counts that must be >= 1 (--threads, --workers)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def check_npy_output(path: str | Path, *inputs: str | None) -> Path:
    """An output of NumPy tokens or codes: must end in .npy (np.save would append it and write
    elsewhere than said) and must not be an input of the same command."""
    out = Path(path)
    if out.suffix.lower() != ".npy":
        raise CommandError(f"{out}: the output holds a NumPy array and must end in .npy")
    for given in filter(None, inputs):
        if out.exists() and Path(given).exists() and out.samefile(given):
            raise CommandError(f"{out}: the output is the input {given}; write to another file")
    if out.is_dir():
        raise CommandError(f"{out}: the output is a folder; name a .npy file")
    return out


def save_npy(path: Path, array: Any) -> None:
    """np.save to exactly `path`, atomically (a temporary file renamed; none left on failure)."""
    import os

    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as handle:
            np.save(handle, array)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
