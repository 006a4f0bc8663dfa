"""One process trains in a run folder at a time.

Two runs writing the same folder would interleave checkpoints and configs and both report
success. `RunLock` takes an advisory lock on `OUT/.lock` (`flock`: the kernel releases it when
its holder dies, so a crashed run never leaves a folder locked) and writes the holder's pid,
host and start time into the file, so the second run's error says who holds the folder, and a
later run notes when the previous holder ended without releasing it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import weakref
from pathlib import Path

from segue.errors import StateError

LOCK_NAME = ".lock"


class RunLockedError(StateError):
    """Another process holds the run folder."""


def _owner_text(raw: str) -> str:
    try:
        owner = json.loads(raw)
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner["started"]))
        return f"pid {owner['pid']} on {owner['host']}, since {started}"
    except (ValueError, KeyError, TypeError):
        return "an unknown process"


class RunLock:
    """`RunLock(folder).acquire()` ... `release()`; released at garbage collection or exit too."""

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / LOCK_NAME
        self._fd: int | None = None
        self.previous: str | None = None  # the last holder, when it ended without releasing
        # On every rank of a job: the folder is this job's (only the main rank holds the file).
        self.active = False

    def acquire(self) -> RunLock:
        """Take the lock or raise RunLockedError naming its holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _owner_text(os.pread(fd, 4096, 0).decode(errors="replace"))
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent}: another process is training in this folder ({holder}); "
                "wait for it to end, or choose another --out"
            ) from None
        stale = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        self.previous = _owner_text(stale) if stale else None
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
        self._fd = fd
        self._finalizer = weakref.finalize(self, RunLock._close, fd, self.path)
        return self

    @staticmethod
    def _close(fd: int, path: Path) -> None:
        try:
            os.ftruncate(fd, 0)  # a clean release leaves no holder behind
        finally:
            os.close(fd)

    def release(self) -> None:
        self.active = False
        if self._fd is not None:
            self._finalizer()
            self._fd = None


def lock_run_folder(directory: str | os.PathLike, is_main: bool) -> RunLock:
    """One process (job) per run folder: the main rank takes `directory/.lock`, and every rank
    learns whether it could (so no rank waits at a barrier for a main rank that gave up)."""
    from segue.train.distributed import broadcast_object

    lock, refused = RunLock(directory), None
    if is_main:
        try:
            lock.acquire()
        except RunLockedError as error:
            refused = str(error)
    refused = broadcast_object(refused)
    if refused is not None:
        raise RunLockedError(refused)
    if lock.previous is not None:
        print(f"{directory}: taking over from {lock.previous}, which ended without releasing "
              "the folder", flush=True)
    lock.active = True
    return lock
