"""The `segue` subcommands, one module per area; `segue.cli` assembles them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2, no traceback."""


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
