"""The photo loop every protection method shares: read, key, protect, write, report.

A method's runner (``jaxprotect.methods.<family>.run``) protects batches of :class:`PhotoTask`
and returns a :class:`PhotoOutcome` (or the exception) per photo; :func:`run_protection` does the
rest the same way for every method: one output name rule (:mod:`jaxprotect.io.naming`), one
per-photo key rule (:mod:`jaxprotect.seeds`), atomic metadata-free writes that never replace an
input, and a batch that goes on past a bad photo and reports it at the end.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from jaxprotect.io import BatchItem, BatchReport, PhotoError, read_photo, write_photo
from jaxprotect.io.naming import output_paths, output_stems, write_json
from jaxprotect.progress import Progress
from jaxprotect.seeds import content_id, photo_key

__all__ = ["PhotoTask", "PhotoOutcome", "Runner", "run_protection", "prepare_output_dir"]


@dataclasses.dataclass
class PhotoTask:
    """One photo to protect: ``path`` as given, ``stem`` of its outputs, ``photo`` uint8 [H, W, 3]
    RGB (EXIF orientation applied) and its PRNG ``key`` (:func:`jaxprotect.seeds.photo_key`)."""

    path: str
    stem: str
    photo: np.ndarray
    key: Any


@dataclasses.dataclass
class PhotoOutcome:
    """A protected photo: ``image`` uint8 [H, W, 3], ``side_by_side`` uint8 (labelled panels),
    ``report`` (JSON-able dict) and ``summary`` (one console line)."""

    image: np.ndarray
    side_by_side: np.ndarray
    report: dict
    summary: str


class Runner(Protocol):
    """What :func:`run_protection` needs of a method: ``method`` (name used in output files),
    ``batch_size``, ``extra_inputs`` (files the run reads besides the photos, never to be
    overwritten), and ``protect(tasks, progress) -> [PhotoOutcome | Exception]``."""

    method: str
    batch_size: int
    extra_inputs: Sequence[str]

    def protect(self, tasks: list[PhotoTask], progress: Progress) -> list: ...


def prepare_output_dir(out_dir) -> Path:
    """Create ``out_dir`` if needed and check it is a writable folder; raises ``ValueError`` with one
    clear line otherwise (before any work starts)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create output folder {out}: {e.strerror or e}") from None
    probe = out / f".jaxprotect-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"output folder {out} is not writable: {e.strerror or e}") from None
    return out


def _write(out_dir, task: PhotoTask, outcome: PhotoOutcome, runner, image_format: str, inputs) -> dict:
    paths = output_paths(out_dir, task.stem, runner.method, image_format)
    write_photo(paths.photo, outcome.image, inputs=inputs)
    write_photo(paths.side_by_side, outcome.side_by_side, inputs=inputs)
    report = {"input": os.path.abspath(task.path), "outputs": paths.as_dict(), **outcome.report}
    write_json(paths.report, report)
    return report


def run_protection(paths, runner: Runner, out_dir, *, seed: int = 0, image_format: str = "png",
                   show_progress: bool = True, stream=None) -> BatchReport:
    """Protect every photo of ``paths`` with ``runner`` and write its outputs into ``out_dir``.

    Photos are read and protected ``runner.batch_size`` at a time; each gets the key
    ``photo_key(seed, pixels)``. A photo that cannot be read, has no face or fails is reported
    (on ``stream``, default stderr, and in the returned :class:`BatchReport`) and the others go
    on. Returns the report (``exit_code`` 1 when any photo failed).
    """
    out = sys.stderr if stream is None else stream
    paths = [os.fspath(p) for p in paths]
    out_dir = prepare_output_dir(out_dir)
    stems = output_stems(paths)
    inputs = list(paths) + list(runner.extra_inputs)
    progress = Progress(len(paths), enabled=show_progress, stream=out)
    report = BatchReport()
    try:
        for start in range(0, len(paths), max(1, runner.batch_size)):
            tasks = []
            for path in paths[start:start + max(1, runner.batch_size)]:
                try:
                    photo = read_photo(path)
                except PhotoError as e:
                    report.items.append(BatchItem(path, False, error=e.reason, error_type=type(e).__name__))
                    progress.write(f"FAILED {path}: [{type(e).__name__}] {e.reason}")
                    progress.photo_done()
                    continue
                tasks.append(PhotoTask(path, stems[path], photo, photo_key(seed, photo)))
            if not tasks:
                continue
            outcomes = runner.protect(tasks, progress)
            for task, outcome in zip(tasks, outcomes):
                try:
                    if isinstance(outcome, Exception):
                        raise outcome
                    value = _write(out_dir, task, outcome, runner, image_format, inputs)
                    value["content_id"] = content_id(task.photo)
                    report.items.append(BatchItem(task.path, True, value=value))
                    progress.write(outcome.summary)
                except Exception as e:  # noqa: BLE001 - one photo's failure never stops the batch
                    if os.environ.get("JAXPROTECT_DEBUG") and not isinstance(e, PhotoError):
                        raise
                    reason = e.reason if isinstance(e, PhotoError) else (str(e) or type(e).__name__)
                    report.items.append(BatchItem(task.path, False, error=reason, error_type=type(e).__name__))
                    progress.write(f"FAILED {task.path}: [{type(e).__name__}] {reason}")
                progress.photo_done()
    finally:
        progress.close()
    order = {p: i for i, p in reversed(list(enumerate(paths)))}
    report.items.sort(key=lambda item: order[item.path])
    print(report.summary(), file=out, flush=True)
    return report
