"""Whether the other processes of a run are still at work: each touches its own heartbeat file
every second; a process whose status is final, or whose heartbeat went stale, is done with."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from jaxprotect.jobs.distributed import ProcessInfo
from jaxprotect.jobs.status import read_status_files, status_dir

__all__ = ["Heartbeat", "heartbeat_path", "peer_states"]


def heartbeat_path(out: Path, run: int, process: int) -> Path:
    """The heartbeat file of ``process`` in run ``run`` of job ``out``."""
    return status_dir(out) / f"alive-run-{run:04d}.p{process}"


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
