"""The photo loop every protection method shares, as the methods see it.

A method's runner (``jaxprotect.methods.<family>.run``) protects batches of :class:`PhotoTask`
and returns a :class:`PhotoOutcome` (or the exception) per photo; the job
(:func:`jaxprotect.jobs.run_job`) does the rest the same way for every method: inputs, the
resumable job folder, one output name rule (:mod:`jaxprotect.io.naming`), one per-photo key
rule (:mod:`jaxprotect.seeds`), atomic metadata-free writes that never replace an input, a
batch that goes on past a bad photo, stops cleanly on a signal, and summaries at the end.
"""
from __future__ import annotations

from jaxprotect.jobs import (
    BatchControl,
    JobOptions,
    JobResult,
    PhotoOutcome,
    PhotoTask,
    Runner,
    StopRequested,
    prepare_output_dir,
    run_job,
)

__all__ = ["PhotoTask", "PhotoOutcome", "Runner", "BatchControl", "StopRequested", "run_protection",
           "prepare_output_dir"]


def run_protection(paths, runner: Runner, out_dir, *, seed: int = 0, image_format: str = "png",
                   show_progress: bool = True, stream=None, **options) -> JobResult:
    """Protect the photos of ``paths`` (files, folders, globs) with ``runner`` into the job folder
    ``out_dir``: :func:`jaxprotect.jobs.run_job` with :class:`~jaxprotect.jobs.JobOptions`
    (``seed``, ``image_format``, progress bars or none, and any other ``options`` field).
    Returns the :class:`~jaxprotect.jobs.JobResult` (``exit_code`` 1 when a photo failed)."""
    opts = JobOptions(seed=seed, image_format=image_format, progress="bar" if show_progress else "none", **options)
    return run_job(list(paths), runner, out_dir, options=opts, stream=stream)
