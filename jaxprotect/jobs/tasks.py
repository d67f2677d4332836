"""What a protection method's runner and the job exchange: one photo's task and outcome, the
runner interface, and the per-batch control a runner may use (stop requests, checkpoints)."""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol, Sequence

import numpy as np

__all__ = ["PhotoTask", "PhotoOutcome", "Runner", "BatchControl", "StopRequested"]


class StopRequested(Exception):
    """Raised at a safe point (between steps or photos) after Ctrl-C or SIGTERM; the job then
    records what is done, keeps what is left, and exits with the interrupted status."""


@dataclasses.dataclass
class PhotoTask:
    """One photo to protect: ``path`` (a file path, or ``dataset:<name>:<record path>``), ``stem``
    of its outputs, ``photo`` uint8 [H, W, 3] RGB (EXIF orientation applied), its PRNG ``key``
    (:func:`jaxprotect.seeds.photo_key`) and its ``id`` in the job's manifest."""

    path: str
    stem: str
    photo: np.ndarray
    key: Any
    id: str = ""


@dataclasses.dataclass
class PhotoOutcome:
    """A protected photo: ``image`` uint8 [H, W, 3], ``side_by_side`` uint8 (labelled panels),
    ``report`` (JSON-able dict), ``summary`` (one console line) and ``verdict``: the held-out
    model's judgement where the method has one (a JSON-able dict, else None)."""

    image: np.ndarray
    side_by_side: np.ndarray
    report: dict
    summary: str
    verdict: dict | None = None


class BatchControl(Protocol):
    """What the job gives a runner with each batch.

    ``stop_requested()`` is True once Ctrl-C or SIGTERM arrived (agreed by every process when
    the runner's steps span processes: call it at the same points on every process);
    ``start`` is ``None`` (a fresh batch) or the (stage, step) the batch resumes at;
    ``checkpoint`` is the batch's :class:`jaxprotect.jobs.checkpoints.BatchCheckpoint` (None
    when the job keeps no mid-optimisation state); ``every`` {stage: N}: save every N steps.
    """

    start: tuple | None
    checkpoint: Any
    every: dict

    def stop_requested(self) -> bool: ...


class Runner(Protocol):
    """What a job needs of a method: ``method`` (name used in output files), ``batch_size``
    (photos protected together), ``extra_inputs`` (files the run reads besides the photos, never
    to be overwritten), ``settings_dict()`` (everything that determines the result; a job folder
    refuses other settings), ``ignored_settings`` (dotted keys of settings_dict that do not change
    the result, e.g. how the computation is batched), ``spans_processes`` (True when one batch's
    steps run on the devices of every JAX process together: each process then calls ``protect``
    the same number of times, possibly with no task), and ``protect(tasks, progress, control)
    -> [PhotoOutcome | Exception]`` (one per task; ``control`` a :class:`BatchControl` or None).
    """

    method: str
    batch_size: int
    extra_inputs: Sequence[str]
    ignored_settings: Sequence[str]
    spans_processes: bool

    def settings_dict(self) -> dict: ...

    def protect(self, tasks: list[PhotoTask], progress, control: BatchControl | None = None) -> list: ...
