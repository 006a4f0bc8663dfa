"""CPU threads: as many as the cores this process may really run on, and waiting that yields.

A torch process defaults to one intra-op thread per core the machine has, which is wrong twice
over on shared machines: a container or a `taskset` may allow fewer cores than `os.cpu_count()`
reports, and OpenMP threads that spin while they wait for each other steal the core another
busy process needs (measured: a 10 s continuation took 17-19 s at 2 threads beside one busy
process, 6 s at 1 thread). The `segue` command therefore starts with passive OpenMP waiting
and `available_cores()` threads (`configure_cpu`), unless the environment or `--threads` says
otherwise.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

#: Where Linux lists the CPU's instruction-set flags.
CPUINFO = Path("/proc/cpuinfo")
#: Flags of CPUs that compute bf16 matrix products natively (AVX512-BF16, AMX).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})

#: cgroup v2's CPU limit ("max 100000" or "<quota> <period>"), and cgroup v1's pair.
CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1 = (
    Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
    Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
)


def _cgroup_cores(v2: Path = CGROUP_V2, v1: tuple[Path, Path] = CGROUP_V1) -> int | None:
    """Cores allowed by a cgroup CPU quota (rounded up), or None without a quota."""
    try:
        quota, period = v2.read_text().split()[:2]
        if quota == "max":
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        quota_us, period_us = (int(p.read_text()) for p in v1)
        return None if quota_us <= 0 or period_us <= 0 else max(1, math.ceil(quota_us / period_us))
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cores()
    return max(1, min(cores, quota) if quota else cores)


@functools.cache
def cpu_has_native_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX): there bf16
    autocast trains the token models 1.4-2.2x faster than fp32 (bench/train_speed.py); elsewhere
    bf16 is emulated and slower. False where /proc/cpuinfo cannot be read (not Linux). Read
    once per path."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return not NATIVE_BF16_FLAGS.isdisjoint(line.partition(":")[2].split())
    return False


def configure_cpu() -> None:
    """For a command-line process, before torch is first imported: OpenMP threads sleep instead
    of spinning while they wait (OMP_WAIT_POLICY=PASSIVE), and torch starts with one thread per
    available core (OMP_NUM_THREADS), unless the environment already says otherwise."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OMP_NUM_THREADS", str(available_cores()))


def set_threads(threads: int | None) -> None:
    """`--threads N` of any command: torch's intra-op threads, and OMP_NUM_THREADS for the
    processes it starts (None: leave `configure_cpu`'s choice)."""
    if threads is None:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
