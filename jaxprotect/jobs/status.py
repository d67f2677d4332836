"""Per-process status files: what each process of a run did to each photo, written atomically
after every photo, and merged into the manifest by process 0 (at the end of a run, and at the
start of the next one for a run that ended without merging).

``OUT/.jaxprotect/status/run-<run>.p<process>.json`` = {"run", "process", "state": "running" |
"complete" | "interrupted" | "failed", "photos": {id: event}}; an event is {"status": "done" |
"failed", "reason", "error_type", "outputs", "verdict", "seconds", "finished"}. Each process
writes only its own file, so a run over many hosts needs no lock, and a process killed at any
moment leaves its last complete file. Merging is idempotent (an attempt already in a photo's
history is not added again), so process 0 can merge a file at the end of a run and again at the
start of the next one, which deletes it: the other processes of a run may still be reading them
when process 0 writes the summaries.
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from jaxprotect.io.naming import write_json

__all__ = ["STATE_DIR", "StatusLog", "status_dir", "read_status_files", "merge_status", "remove_status_files"]

STATE_DIR = ".jaxprotect"


def status_dir(out_dir) -> Path:
    """The folder of the status files of job ``out_dir``."""
    return Path(out_dir) / STATE_DIR / "status"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class StatusLog:
    """The status file of process ``process`` in run ``run`` of job ``out_dir``."""

    def __init__(self, out_dir, run: int, process: int):
        self.path = status_dir(out_dir) / f"run-{run:04d}.p{process}.json"
        self.data = {"run": run, "process": process, "state": "running", "started": _now(), "photos": {}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, self.data)

    def record(self, photo_id: str, status: str, **fields) -> dict:
        """Record that ``photo_id`` is ``status`` ("done" or "failed") with ``fields``; written at once."""
        event = {"status": status, **{k: v for k, v in fields.items() if v is not None}, "finished": _now()}
        self.data["photos"][photo_id] = event
        write_json(self.path, self.data)
        return event

    def finish(self, state: str) -> None:
        """Mark the run's end for this process: "complete", "interrupted" or "failed"."""
        self.data["state"] = state
        self.data["ended"] = _now()
        write_json(self.path, self.data)

    @property
    def events(self) -> dict:
        """{photo id: event} recorded by this process in this run."""
        return self.data["photos"]


def read_status_files(out_dir) -> list[tuple[Path, dict]]:
    """Every status file of job ``out_dir`` as (path, content), oldest run first; unreadable ones
    (there should be none: they are written atomically) are skipped."""
    folder = status_dir(out_dir)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("run-*.p*.json")):
        try:
            out.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue
    out.sort(key=lambda item: (item[1].get("run", 0), item[1].get("process", 0)))
    return out


def merge_status(manifest: dict, files: list[tuple[Path, dict]]) -> int:
    """Apply the events of status ``files`` to ``manifest`` (in place): each photo's status and
    details, and one entry in its ``history``. Returns the number of events applied."""
    photos = {p["id"]: p for p in manifest["photos"]}
    n = 0
    for _, data in files:
        for pid, event in data.get("photos", {}).items():
            entry = photos.get(pid)
            if entry is None:
                continue
            attempt = {"run": data.get("run"), "process": data.get("process"), "status": event["status"],
                       "finished": event.get("finished")}
            history = entry.setdefault("history", [])
            if attempt in history:
                continue
            for k in ("reason", "error_type", "outputs", "verdict", "seconds"):
                entry.pop(k, None)
            entry.update({k: v for k, v in event.items() if k != "finished"})
            history.append(attempt)
            n += 1
    return n


def remove_status_files(files: list[tuple[Path, dict]]) -> None:
    """Delete merged status files."""
    for path, _ in files:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
