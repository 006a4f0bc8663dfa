"""A clean stop on SIGTERM / SIGINT: the signal is recorded, the step finishes, the trainer
checkpoints and returns. A second Ctrl-C gives up the checkpoint and stops at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any


class StopRequests:
    """While entered (in the main thread), SIGTERM and SIGINT set `signal` instead of killing the
    process; `on_first(signum)` is called once, for the first. `request()` does the same from
    code (signum -1). Leaving restores the handlers that were there before."""

    def __init__(self, on_first: Callable[[int], None] = lambda signum: None):
        self.signal: int | None = None
        self._on_first = on_first
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def request(self, signum: int = -1) -> None:
        if self.signal is None:
            self.signal = signum

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signal is not None:
            if signum == signal.SIGINT:  # Ctrl-C twice: give up the checkpoint, stop now
                raise KeyboardInterrupt
            return  # e.g. torchrun's SIGTERM after the terminal's SIGINT: already stopping
        self.signal = signum
        self._on_first(signum)

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous.clear()
