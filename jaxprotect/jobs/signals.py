"""Ctrl-C and SIGTERM (what a pre-empted machine sends) turned into a request to stop at the next
safe point, instead of a traceback in the middle of a write."""
from __future__ import annotations

import signal
import threading

__all__ = ["StopSignals", "EXIT_STATUS"]

# The shell's convention: 128 + signal number.
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopSignals:
    """Context manager: while inside, SIGINT and SIGTERM set :attr:`received` (the first signal)
    instead of killing the process; a second Ctrl-C raises ``KeyboardInterrupt`` as usual. The
    previous handlers come back on exit. Only the main thread can install handlers; elsewhere
    this does nothing."""

    def __init__(self, stream=None):
        self.received: int | None = None
        self.stream = stream
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.received is None:
            self.received = signum
            if self.stream is not None:
                name = signal.Signals(signum).name
                print(f"\n{name} received: stopping at the next safe point (the current state is saved)",
                      file=self.stream, flush=True)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous.clear()
        return False

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self.received is not None

    def request(self, signum: int = signal.SIGTERM) -> None:
        """Request a stop as if ``signum`` had arrived (for callers that detect their own reasons)."""
        self._handle(signum, None)

    @property
    def exit_status(self) -> int:
        """130 after SIGINT, 143 after SIGTERM (0 when nothing was received)."""
        return EXIT_STATUS.get(self.received, 0) if self.received is not None else 0
