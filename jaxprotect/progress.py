"""Progress of a protection run: photos done out of the total (with elapsed time and an
estimate), and the current photo's stage and steps (the first step of a stage that compiles says so).

Three modes: ``"bar"`` (two tqdm bars on the stream), ``"json"`` (one JSON object per line, for
pod logs and scripts: ``{"event": "start" | "photo" | "step" | "message" | "end", "process": i,
...}``; step lines at most every ``json_interval_s`` seconds), and ``"none"`` (only the messages,
as plain lines).
"""
from __future__ import annotations

import json
import sys
import time

__all__ = ["Progress", "MODES"]

MODES = ("bar", "json", "none")


class Progress:
    """Progress of ``total_photos`` photos on ``stream`` (default stderr).

    Runners call :meth:`stage` when a stage begins (with ``compiles=True`` when its first step
    also compiles the step function) and :meth:`step` after each step; the job calls
    :meth:`photo_done` after each photo and :meth:`write` for messages. ``enabled=False`` is
    ``mode="none"``. ``process`` is put in every JSON line; ``initial`` photos were done before
    (a resumed job: they count as done, not in the estimate).
    """

    def __init__(self, total_photos: int, enabled: bool = True, stream=None, *, mode: str | None = None,
                 process: int = 0, json_interval_s: float = 10.0, initial: int = 0):
        self.mode = mode or ("bar" if enabled else "none")
        if self.mode not in MODES:
            raise ValueError(f"progress mode must be one of {MODES}, got {self.mode!r}")
        self.enabled = self.mode == "bar"
        self.stream = sys.stderr if stream is None else stream
        self.total = int(total_photos)
        self.process = process
        self.json_interval_s = json_interval_s
        self.done, self.failed, self.initial = int(initial), 0, int(initial)
        self.photos = self.steps = None
        self._stage = ""
        self._step = 0
        self._stage_total = None
        self._compiling = False
        self._start = time.monotonic()
        self._last_json = -float("inf")
        if self.mode == "bar":
            from tqdm import tqdm

            self._tqdm = tqdm
            self.photos = tqdm(total=total_photos, initial=self.initial, desc="photos", unit="photo", file=self.stream,
                               position=0, dynamic_ncols=True)

    # -- JSON lines
    def _times(self) -> dict:
        elapsed = time.monotonic() - self._start
        finished = self.done + self.failed - self.initial
        left = max(self.total - self.done - self.failed, 0)
        eta = round(elapsed / finished * left, 1) if finished else None
        return {"elapsed_s": round(elapsed, 1), "eta_s": eta}

    def event(self, kind: str, **fields) -> None:
        """Emit one JSON line ``{"event": kind, "process": .., **fields}`` (json mode only)."""
        if self.mode != "json":
            return
        line = {"event": kind, "process": self.process, **fields}
        print(json.dumps(line, default=str), file=self.stream, flush=True)

    def _counts(self) -> dict:
        return {"done": self.done, "failed": self.failed, "total": self.total, **self._times()}

    # -- the interface runners and the job call
    def stage(self, name: str, total: int | None = None, compiles: bool = False) -> None:
        """Begin stage ``name`` of the current photo with ``total`` steps (None: no step count)."""
        self._stage, self._compiling = name, compiles
        self._step, self._stage_total = 0, total
        if self.mode == "json":
            self._last_json = -float("inf")
            self.event("stage", stage=name, steps=total, compiles=compiles, **self._counts())
        if self.mode != "bar":
            return
        if self.steps is None:
            self.steps = self._tqdm(total=total, unit="step", file=self.stream, position=1, leave=False,
                                    dynamic_ncols=True)
        self.steps.reset(total=total)
        self.steps.set_description(f"{name}: compiling (first step only)" if compiles else name)

    def step(self, n: int = 1) -> None:
        """``n`` more steps of the current stage are done."""
        self._step += n
        if self.mode == "json":
            now = time.monotonic()
            if now - self._last_json >= self.json_interval_s or self._step == self._stage_total:
                self._last_json = now
                self.event("step", stage=self._stage, step=self._step, steps=self._stage_total, **self._counts())
            return
        if self.mode != "bar" or self.steps is None:
            return
        if self._compiling:
            self._compiling = False
            self.steps.set_description(self._stage)
        self.steps.update(n)

    def photo_done(self, n: int = 1, *, status: str = "done", photo: str | None = None) -> None:
        """``n`` more photos finished, ``status`` "done" or "failed" (``photo``: its name)."""
        if status == "failed":
            self.failed += n
        else:
            self.done += n
        if self.mode == "bar":
            self.photos.update(n)
        elif self.mode == "json":
            self.event("photo", photo=photo, status=status, **self._counts())

    def write(self, line: str) -> None:
        """Print a message without breaking the bars (a ``message`` line in json mode)."""
        if self.mode == "bar":
            self._tqdm.write(line, file=self.stream)
        elif self.mode == "json":
            self.event("message", text=line)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """Remove the bars."""
        for bar in (self.steps, self.photos):
            if bar is not None:
                bar.close()
        self.steps = self.photos = None
