"""Protection jobs: an output folder that is a resumable, multi-host job.

``OUT/`` holds, besides each photo's outputs (``<stem>.<method>.png``, ``.side_by_side.png``,
``.json``; :mod:`jaxprotect.io.naming`):

- ``job.json``: the manifest: method, settings, inputs with content hashes, every photo's
  status (:mod:`~jaxprotect.jobs.manifest`);
- ``summary.json`` / ``summary.md``: every photo done (with the held-out verdict where the
  method has one), failed (with the reason) or left (:mod:`~jaxprotect.jobs.summary`);
- ``.jaxprotect/status/``: each process's status file of the running run
  (:mod:`~jaxprotect.jobs.status`), merged into the manifest by process 0;
- ``.jaxprotect/batches/`` (one process) or ``.jaxprotect/rounds/`` (batches spanning several
  processes): the mid-optimisation state of the batches in progress, saved with orbax every N
  steps, at a stage's end and when stopping (:mod:`~jaxprotect.jobs.checkpoints`).

Modules, one job each: :mod:`~jaxprotect.jobs.inputs` (files, folders, globs, datasets),
:mod:`~jaxprotect.jobs.plan` (who does which photos), :mod:`~jaxprotect.jobs.signals` (Ctrl-C /
SIGTERM), :mod:`~jaxprotect.jobs.distributed` (``jax.distributed`` set-up and agreement),
:mod:`~jaxprotect.jobs.tasks` (what runners exchange with the job), and
:mod:`~jaxprotect.jobs.job` (:func:`run_job`, the loop).
"""
from jaxprotect.jobs.checkpoints import BatchCheckpoint
from jaxprotect.jobs.distributed import ProcessInfo, exit_now, initialize, process_info
from jaxprotect.jobs.inputs import InputError, InputPhoto, Inputs, resolve_inputs
from jaxprotect.jobs.job import DEFAULT_CHECKPOINT_EVERY, JobOptions, JobResult, prepare_output_dir, run_job
from jaxprotect.jobs.manifest import JobError, JobSettingsError
from jaxprotect.jobs.signals import StopSignals
from jaxprotect.jobs.tasks import BatchControl, PhotoOutcome, PhotoTask, Runner, StopRequested

__all__ = [
    "run_job", "JobOptions", "JobResult", "prepare_output_dir", "DEFAULT_CHECKPOINT_EVERY",
    "resolve_inputs", "Inputs", "InputPhoto", "InputError", "JobError", "JobSettingsError",
    "initialize", "process_info", "ProcessInfo", "exit_now", "StopSignals", "BatchCheckpoint",
    "PhotoTask", "PhotoOutcome", "Runner", "BatchControl", "StopRequested",
]
