"""Whether the other processes of a run are still at work: each touches its own heartbeat file
every second; a process whose status is final, or whose heartbeat went stale, is done with.

Leaving early (:class:`Departure`): a process other than 0 writes a departure marker just before
it exits; process 0, which hosts ``jax.distributed``'s coordination service, exits only once
every other process has written its marker or was lost. Were process 0 to go first, the service
would vanish under a process still finishing, and that process would be aborted (SIGABRT)."""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import NoReturn

from jaxprotect.jobs.distributed import ProcessInfo, exit_now, wait_for
from jaxprotect.jobs.status import read_status_files, status_dir

__all__ = ["Heartbeat", "heartbeat_path", "peer_states", "departure_path", "Departure"]


def heartbeat_path(out: Path, run: int, process: int) -> Path:
    """The heartbeat file of ``process`` in run ``run`` of job ``out``."""
    return status_dir(out) / f"alive-run-{run:04d}.p{process}"


def departure_path(out: Path, run: int, process: int) -> Path:
    """The marker that ``process`` writes as it leaves run ``run`` of job ``out`` early."""
    return status_dir(out) / f"left-run-{run:04d}.p{process}"


def peer_states(out: Path, run: int, info: ProcessInfo, stale_s: float) -> dict | None:
    """{process: its final state} once every other process of run ``run`` has written its last
    status or stopped beating (state "lost"); None while some are still at work."""
    states = {d["process"]: d.get("state") for _, d in read_status_files(out) if d.get("run") == run}
    now = time.time()
    out_states = {}
    for p in range(info.count):
        if p == info.index:
            continue
        if states.get(p) not in (None, "running"):
            out_states[p] = states[p]
            continue
        alive = heartbeat_path(out, run, p)
        try:
            age = now - alive.stat().st_mtime
        except FileNotFoundError:
            age = float("inf")
        if age <= stale_s:
            return None
        out_states[p] = "lost"
    return out_states


class Heartbeat:
    """Touches ``path`` every second in a daemon thread, so the other processes can tell this
    one is alive (a killed process stops touching it)."""

    def __init__(self, path: Path, every_s: float = 1.0):
        self.path = path
        self._done = threading.Event()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _run(self, every_s):
        while not self._done.wait(every_s):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def stop(self):
        self._done.set()
        self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)


@dataclasses.dataclass(frozen=True)
class Departure:
    """How this process leaves run ``run`` of job ``out`` early (see the module docstring).
    ``timeout_s`` bounds process 0's wait for a process that neither leaves nor goes quiet
    (one that raised an error, say)."""

    out: Path
    run: int
    info: ProcessInfo
    stale_s: float
    timeout_s: float = 30.0

    def others_gone(self) -> bool:
        """Whether every other process has written its departure marker or was lost."""
        states = peer_states(self.out, self.run, self.info, self.stale_s)
        if states is None:
            return False
        return all(state == "lost" or departure_path(self.out, self.run, p).exists() for p, state in states.items())

    def leave(self, status: int) -> NoReturn:
        """Exit now with ``status``: at once on processes other than 0 (after writing the marker),
        on process 0 once the others are gone."""
        if self.info.primary:
            wait_for(self.others_gone, timeout_s=self.timeout_s, poll_s=0.1)
            time.sleep(0.2)  # from a marker to its process's exit
        else:
            marker = departure_path(self.out, self.run, self.info.index)
            try:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
            except OSError:
                pass  # process 0 then waits for timeout_s
        exit_now(status)
