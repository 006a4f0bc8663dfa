"""PyTorch distributed, as launched by torchrun: process group, DDP/FSDP wrapping, data sharding.

A plain `python` launch (or torchrun with one process) runs without a process group; every helper
here then degrades to the single-process case. Backends: nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from segue.errors import InputError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global rank, world size and rank on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> tuple[DistInfo, bool]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*).

    Returns (info, created): `created` is False when a group already existed or none is needed
    (WORLD_SIZE unset or 1), so the caller knows whether to destroy it.
    """
    if is_initialized():
        return current(), False
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(), False
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl", device_id=torch.device("cuda", local_rank))
    else:
        dist.init_process_group(backend="gloo")
    return DistInfo(rank, world_size, local_rank), True


#: How long `leave_process_group` lets gloo's threads finish after the last barrier.
DRAIN_SECONDS = 0.2


def leave_process_group() -> None:
    """Leave the process group at the end of a job (every rank, at the same point).

    Why not just `destroy_process_group()`: gloo runs collectives on its own threads, and a
    finished one is freed there after the caller has returned, releasing tensors whose Python
    objects need the GIL. When the interpreter has begun to shut down by then, Python ends that
    thread under a C++ frame: `terminate called without an active exception`, SIGABRT, and
    torchrun reports a failed job that had saved everything (3 runs in 33 of
    tests/train/ddp_worker.py on 2 CPU processes; 0 in 60 with this). So: a barrier, a
    GIL-free pause in which those threads finish, then destroy.
    """
    if not is_initialized():
        return
    dist.barrier()
    time.sleep(DRAIN_SECONDS)
    dist.destroy_process_group()


def parse_device(spec: str) -> torch.device:
    """A device name ("cpu", "cuda", "cuda:1", "mps") that this machine has; ValueError naming
    the choices otherwise (torch's own errors are a RuntimeError, or a failure much later)."""
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise InputError(
            f"device {spec!r} is not a device name: use cpu, cuda, cuda:N, mps or auto"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"device {spec!r}: this machine has no CUDA device (use cpu or auto)")
        if device.index is not None and device.index >= count:
            raise InputError(f"device {spec!r}: this machine has {count} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {spec!r}: MPS is not available here (use cpu or auto)")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {spec!r}: segue runs on cpu, cuda or mps")
    return device


def resolve_device(spec: str, info: DistInfo) -> torch.device:
    """ "auto" -> cuda:LOCAL_RANK if CUDA is available, else cpu; anything else as given, if this
    machine has it (`parse_device`)."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", info.local_rank)
        return torch.device("cpu")
    return parse_device(spec)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def current() -> DistInfo:
    """This process's place in the existing process group; one process when there is none."""
    if not is_initialized():
        return DistInfo()
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local)


def wait_group(timeout: timedelta) -> Any:
    """A CPU (gloo) group of every rank whose barrier waits up to `timeout`, for waits longer
    than the main group allows (NCCL's default is 10 min): the other ranks waiting while rank 0
    builds a corpus. None without a process group. Every rank must call it at the same point."""
    if not is_initialized():
        return None
    return dist.new_group(backend="gloo", timeout=timeout)


def barrier(group: Any = None) -> None:
    """Wait for every rank (of `group`, e.g. a `wait_group`; default: the main group)."""
    if is_initialized():
        dist.barrier(group=group)


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce ("sum" or "max"); a no-op without a process group."""
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` from rank `src` on every rank."""
    if not is_initialized():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj` in rank order, on every rank (small objects: RNG states)."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def wrap_ddp(
    module: nn.Module, device: torch.device, *, find_unused_parameters: bool = False
) -> nn.Module:
    """DistributedDataParallel around `module` (already on `device`); rank 0's weights win."""
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def shard_fsdp(module: nn.Module, units: list[nn.Module]) -> nn.Module:
    """FSDP2 (`fully_shard`) each of `units` (e.g. transformer blocks), then `module` itself.

    Rank 0's weights are broadcast first, so every rank starts from the same model. The module
    is changed in place (its parameters become DTensor shards) and returned.
    """
    from torch.distributed.fsdp import fully_shard

    if is_initialized():
        with torch.no_grad():
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)
    for unit in units:
        fully_shard(unit)
    fully_shard(module)
    return module


def default_fsdp_units(module: nn.Module) -> list[nn.Module]:
    """Every child of every `nn.ModuleList` (the transformer blocks, in the usual layout)."""
    units = []
    for sub in module.modules():
        if isinstance(sub, nn.ModuleList):
            units.extend(sub)
    return units


class ResumableBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices: shuffled per epoch, sharded across ranks, resumable.

    Epoch e's order is a permutation seeded by (seed, e), the same on every rank; rank r takes
    items r, r + world_size, ... of it (the tail that does not divide evenly is dropped, so
    every rank sees the same number of batches). Batch i of rank r and batch i of the other
    ranks together are exactly batch i of a single process with `world_size` times the batch.
    `set_position(epoch, batch)` makes the next `iter()` start at that batch of that epoch.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.size = size
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int) -> None:
        self.set_position(epoch, 0)

    def set_position(self, epoch: int, batch: int) -> None:
        self.epoch = epoch
        self.start_batch = batch

    def __len__(self) -> int:
        per_rank = self.size // self.world_size
        if self.drop_last:
            return per_rank // self.batch_size
        return -(-per_rank // self.batch_size)

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        per_rank = self.size // self.world_size
        shard = self._order()[: per_rank * self.world_size][self.rank :: self.world_size]
        batches = [shard[i : i + self.batch_size] for i in range(0, len(shard), self.batch_size)][
            : len(self)
        ]
        return iter(batches[self.start_batch :])  # a list now: later position changes don't leak


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The full tensor of an FSDP shard (DTensor; gathered: call on every rank), else `tensor`."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """`module.state_dict()` as full CPU tensors (FSDP shards gathered: call on every rank)."""
    return {
        key: (value.full_tensor() if hasattr(value, "full_tensor") else value).detach().cpu()
        for key, value in module.state_dict().items()
    }


@torch.no_grad()
def load_full_state_dict(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a full state dict into `module`, slicing FSDP shards locally (no communication)."""
    targets = module.state_dict(keep_vars=True)
    missing, unexpected = sorted(set(targets) - set(state)), sorted(set(state) - set(targets))
    if missing or unexpected:
        raise KeyError(
            f"state dict does not fit the module: missing {missing}, unexpected {unexpected}"
        )
    for key, target in targets.items():
        if tuple(state[key].shape) != tuple(target.shape):
            raise InputError(f"{key}: shape {tuple(state[key].shape)} != {tuple(target.shape)}")
        copy_full_into(target, state[key])


@torch.no_grad()
def copy_full_into(target: torch.Tensor, source: torch.Tensor) -> None:
    """target.copy_(source) where `target` may be an FSDP shard (DTensor) of full `source`."""
    source = source.to(device=target.device, dtype=target.dtype)
    if hasattr(target, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        source = distribute_tensor(
            source, target.device_mesh, target.placements, src_data_rank=None
        )
    target.copy_(source)
