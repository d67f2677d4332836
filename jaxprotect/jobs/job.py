"""A protection job: an output folder that records its inputs, settings and every photo's status,
so that a run can stop at any moment (Ctrl-C, SIGTERM, a dead machine) and the same command
finishes it later, on any number of processes, each photo done once.

:func:`run_job` is the loop every method shares. Process 0 reads the manifest
(:mod:`~jaxprotect.jobs.manifest`), merges the status files of earlier runs
(:mod:`~jaxprotect.jobs.status`), adds the new inputs and writes it; every process then plans the
same batches (:mod:`~jaxprotect.jobs.plan`) and protects its share: photos are read ahead by grain
(:func:`_reader`), protected by the method's runner, written atomically (never over an input,
no metadata), and recorded in the process's status file at once. A stop request
(:mod:`~jaxprotect.jobs.signals`) is honoured at the next safe point: between photos, or after
a step, once the batch's state is saved (:mod:`~jaxprotect.jobs.checkpoints`). At the end process
0 merges every status file into the manifest and writes ``summary.json`` / ``summary.md``
(:mod:`~jaxprotect.jobs.summary`).

Why grain reads but the manifest plans: the photos left to do are known only from the
manifest, and a restart may have another number of processes, so each run plans its shares anew
from the manifest (:mod:`~jaxprotect.jobs.plan`) instead of restoring the iterators of the last
run (which fit only the same process count and the same photo list); grain then reads each
process's planned batches ahead of the computation (threads, prefetch).
"""
from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

from jaxprotect.io import PhotoError
from jaxprotect.io.naming import output_paths
from jaxprotect.jobs.checkpoints import (
    BatchCheckpoint,
    RoundCheckpoint,
    batches_dir,
    list_batches,
    list_rounds,
    remove_batches,
    remove_rounds,
    rounds_dir,
)
from jaxprotect.jobs.distributed import ProcessInfo, any_process, broadcast_json, exit_now, process_info, wait_for
from jaxprotect.jobs.folder import clean_temporaries, drop_own_outputs, prepare_output_dir, write_outputs
from jaxprotect.jobs.inputs import InputPhoto, Inputs, read_input, resolve_inputs
from jaxprotect.jobs.manifest import JobError, JobSettingsError, load_manifest, save_manifest, update_manifest
from jaxprotect.jobs.peers import Departure, Heartbeat, heartbeat_path, peer_states
from jaxprotect.jobs.plan import PlannedBatch, plan_batches
from jaxprotect.jobs.signals import StopSignals
from jaxprotect.jobs.status import StatusLog, merge_status, read_status_files, remove_status_files, status_dir
from jaxprotect.jobs.summary import counts_line, summarise, write_summary
from jaxprotect.jobs.tasks import PhotoTask, StopRequested
from jaxprotect.progress import Progress

__all__ = ["JobOptions", "JobResult", "run_job", "prepare_output_dir", "DEFAULT_CHECKPOINT_EVERY"]

# Steps between saves of a batch's state, per stage: see experiments/results/bench_checkpoint.md.
DEFAULT_CHECKPOINT_EVERY = {"fine-tune": 25, "search": 10}


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """How a job runs (none of it changes a photo's result except ``seed`` and ``image_format``,
    which a job folder keeps): ``seed`` of every photo's key; ``image_format`` png/webp/jpg;
    ``overwrite`` redoes photos already done; ``progress`` "bar" | "json" | "none";
    ``checkpoint_every`` {stage: steps between saves of a batch's state} (0: only when stopping
    and at the end of the fine-tuning); ``json_interval_s`` between step lines in json mode;
    ``peer_stale_s``: a process whose heartbeat is older than this is taken for dead."""

    seed: int = 0
    image_format: str = "png"
    overwrite: bool = False
    progress: str = "bar"
    checkpoint_every: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_CHECKPOINT_EVERY))
    json_interval_s: float = 10.0
    peer_stale_s: float = 20.0


@dataclasses.dataclass
class JobResult:
    """How a run ended: ``state`` "complete" | "interrupted"; ``exit_code`` (0 all done, 1 some
    photo failed in this run, 130/143 interrupted by SIGINT/SIGTERM); ``events`` {photo id:
    event} of this process; ``summary`` (process 0: the summary dict written to OUT);
    ``leave_now``: in a run over several processes where some process stopped early, call
    :meth:`leave` (``jax.distributed``'s shutdown would wait for that process, then abort)."""

    state: str
    exit_code: int
    events: dict
    summary: dict | None = None
    leave_now: bool = False
    departure: Departure | None = dataclasses.field(default=None, repr=False)

    def leave(self) -> NoReturn:
        """Exit the process now with :attr:`exit_code`, process 0 after the others (it hosts the
        coordination service that their exit still needs)."""
        if self.departure is None:
            exit_now(self.exit_code)
        self.departure.leave(self.exit_code)

    @property
    def failed(self) -> list:
        """Ids of the photos that failed in this run on this process."""
        return [k for k, e in self.events.items() if e["status"] == "failed"]


class _Control:
    """The :class:`~jaxprotect.jobs.tasks.BatchControl` of one batch."""

    def __init__(self, out, stop: StopSignals, info: ProcessInfo, lockstep: bool, batch: PlannedBatch, every: dict,
                 entries: dict, round_batches=None):
        self.out, self._stop, self.info, self.lockstep, self._entries = out, stop, info, lockstep, entries
        self.start = batch.start
        self.every = every
        self.checkpoint = None
        self._round = round_batches

    def stop_requested(self) -> bool:
        if self.lockstep:
            return any_process(self._stop.stopping, self.info)
        return self._stop.stopping

    def checkpoint_for(self, photo_ids, mesh=None):
        """The saved state of the batch of ``photo_ids`` (the photos actually optimised together):
        a :class:`BatchCheckpoint`, or in lockstep the round's :class:`RoundCheckpoint` (every
        process must ask, ``mesh`` the batch mesh)."""
        if self.lockstep:
            sha = [[self._entries[p].get("sha256") for p in b] for b in self._round]
            self.checkpoint = RoundCheckpoint(self.out, self._round, photo_ids, mesh=mesh, index=self.info.index,
                                              count=self.info.count, sha256=sha)
        else:
            sha = [self._entries[p].get("sha256") for p in photo_ids]
            self.checkpoint = BatchCheckpoint(self.out, photo_ids, sha256=sha)
        return self.checkpoint


def _plan_primary(out: Path, runner, inputs: Inputs, options: JobOptions, info: ProcessInfo) -> dict:
    """Process 0: clean up, merge earlier status files, update and write the manifest."""
    clean_temporaries(out)
    manifest = load_manifest(out)
    files = read_status_files(out)
    if manifest is not None:
        merge_status(manifest, files)
    notes = drop_own_outputs(inputs, out, runner.method)
    manifest, run, more = update_manifest(
        out, manifest, method=runner.method, settings=runner.settings_dict(),
        run_options={"seed": options.seed, "image_format": options.image_format},
        ignore=getattr(runner, "ignored_settings", ()), inputs=inputs, overwrite=options.overwrite,
        processes=info.count, execution={"checkpoint_every": options.checkpoint_every},
    )
    notes += more
    ids = {p["id"] for p in manifest["photos"]}
    clash = []
    for p in manifest["photos"]:
        paths = output_paths(out, p["stem"], runner.method, options.image_format)
        clash += [p["name"] for q in (paths.photo, paths.side_by_side) if os.path.abspath(q) in ids]
    if clash:
        raise JobError(f"an output of this job would replace an input photo ({clash[0]}); choose another output folder")
    # Saved state is resumed only for photos still pending and unchanged since it was saved, and
    # (a round of a run over several processes) by as many processes.
    entry = {p["id"]: p for p in manifest["photos"]}

    def unchanged(photos, sha):
        return all(pid in entry and entry[pid]["status"] == "pending" for pid in photos) \
            and sha == [entry[pid].get("sha256") for pid in photos]

    lockstep = bool(getattr(runner, "spans_processes", False)) and info.count > 1
    keep = set() if lockstep else {b["id"] for b in list_batches(out) if unchanged(b["photos"], b.get("sha256"))}
    dropped = remove_batches(out, keep)
    keep = set()
    if lockstep:
        keep = {r["id"] for r in list_rounds(out) if r["processes"] == info.count
                and all(unchanged(b, s) for b, s in zip(r["batches"], r.get("sha256") or [None] * len(r["batches"])))}
    dropped += remove_rounds(out, keep)
    if dropped:
        notes.append(f"{dropped} saved batch states dropped (photos done, changed, or saved by a run with another "
                     "number of processes): those photos start again")
    save_manifest(out, manifest)
    remove_status_files(files)
    return {"ok": True, "run": run, "notes": notes}


def _reader(batches: list[PlannedBatch], photos: dict, records, seed: int, threads: int = 2):
    """Iterate over (batch, [(id, pixels | PhotoError)]) with grain reading ahead in threads."""
    import grain

    def load(batch: PlannedBatch):
        got = []
        for pid in batch.photos:
            try:
                got.append((pid, read_input(photos[pid], records)))
            except PhotoError as e:
                got.append((pid, e))
        return batch, got

    if not batches:
        return iter(())
    ds = grain.MapDataset.source(batches).map(load)
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=threads)))


def _input_photo(entry: dict) -> InputPhoto:
    return InputPhoto(entry["id"], entry["name"], entry["source"], entry.get("index"), entry.get("sha256"))


def _reason(e: Exception) -> str:
    return e.reason if isinstance(e, PhotoError) else (str(e) or type(e).__name__)


def _finish_primary(out: Path, run: int, state: str, info: ProcessInfo):
    """Process 0 at the end: merge every status file into the manifest, write the summaries. In a
    run over several processes the status files stay until the next run (the others may still be
    reading them to decide that everyone is done)."""
    manifest = load_manifest(out)
    files = read_status_files(out)
    merge_status(manifest, files)
    save_manifest(out, manifest)
    if info.count == 1:
        remove_status_files(files)
    summary = summarise(manifest, run=run, state=state)
    write_summary(out, summary)
    for folder in (status_dir(out), batches_dir(out), rounds_dir(out), out / ".jaxprotect"):  # no empty state folders
        try:
            folder.rmdir()
        except OSError:
            pass
    return summary


def run_job(inputs, runner, out_dir, *, options: JobOptions = JobOptions(), info: ProcessInfo | None = None,
            stream=None, stop: StopSignals | None = None) -> JobResult:
    """Protect every photo of ``inputs`` that job ``out_dir`` has not done yet with ``runner``.

    ``inputs``: an :class:`~jaxprotect.jobs.inputs.Inputs` or a list of files, folders and globs.
    ``runner``: a :class:`~jaxprotect.jobs.tasks.Runner`. ``info``: this process's place (default
    from ``jax.distributed``). ``stop``: the :class:`~jaxprotect.jobs.signals.StopSignals` to
    honour (default: installed here for the run). Messages and progress go to ``stream``
    (default stderr). Raises :class:`~jaxprotect.jobs.manifest.JobError` (and ``ValueError`` for
    the output folder) before any work when the job cannot run as asked.
    """
    stream = sys.stderr if stream is None else stream
    info = info or process_info()
    out = prepare_output_dir(out_dir)
    if not isinstance(inputs, Inputs):
        inputs = resolve_inputs([os.fspath(p) for p in inputs])
    lockstep = bool(getattr(runner, "spans_processes", False)) and info.count > 1

    decision = None
    if info.primary:
        try:
            decision = _plan_primary(out, runner, inputs, options, info)
        except (JobError, OSError) as e:
            decision = {"ok": False, "error": str(e) if isinstance(e, JobError) else f"cannot use {out}: {e}",
                        "settings": isinstance(e, JobSettingsError)}
    decision = broadcast_json(decision, info)
    if not decision["ok"]:
        raise (JobSettingsError if decision["settings"] else JobError)(decision["error"])
    run = decision["run"]
    manifest = load_manifest(out)
    entries = {p["id"]: p for p in manifest["photos"]}
    current = [p for p in manifest["photos"] if p.get("run") == run]
    pending = [p["id"] for p in current if p["status"] != "done"]
    saved = [] if lockstep else list_batches(out)
    rounds = list_rounds(out) if lockstep else []
    plans = [plan_batches(pending, max(1, runner.batch_size), saved, i, info.count, lockstep, rounds)
             for i in (range(info.count) if lockstep else [info.index])]
    plan = plans[info.index if lockstep else 0]
    round_of = {k: [list(p[k].photos) for p in plans] for k in range(len(plan))} if lockstep else {}
    mine = sum(len(b.photos) for b in plan)

    # One process: the bar counts the whole job (photos done earlier included); several: each its share.
    before = len(current) - len(pending) if info.count == 1 else 0
    progress = Progress(mine + before, mode=options.progress, stream=stream, process=info.index,
                        json_interval_s=options.json_interval_s, initial=before)
    if info.primary:
        for note in decision["notes"]:
            progress.write(note)
        done_before = len(current) - len(pending)
        line = f"job {out}: {len(current)} photos; {done_before} already done"
        if done_before:
            line += " (skipped; --overwrite redoes them)"
        line += f"; {len(pending)} to protect"
        if info.count > 1:
            line += f" over {info.count} processes"
        progress.write(line)
    progress.event("start", run=run, photos=len(current), pending=len(pending), mine=mine, processes=info.count)

    status = StatusLog(out, run, info.index)
    beat = Heartbeat(heartbeat_path(out, run, info.index)) if info.count > 1 else None
    photos = {pid: _input_photo(entries[pid]) for b in plan for pid in b.photos}
    own_stop = stop is None
    stop = stop or StopSignals(stream)
    state = "complete"
    started = time.monotonic()
    try:
        if own_stop:
            stop.__enter__()
        reader = _reader(plan, photos, inputs.records, options.seed)
        for k, (batch, loaded) in enumerate(reader):
            if (any_process(stop.stopping, info) if lockstep else stop.stopping):
                raise StopRequested
            _run_batch(out, runner, batch, loaded, entries, status, progress, stop, info, lockstep, options,
                       round_of.get(k))
    except (StopRequested, KeyboardInterrupt):
        state = "interrupted"
        if stop.received is None:
            stop.received = signal.SIGINT  # a second Ctrl-C
    except BaseException:
        state = "failed"  # an unexpected error: what is done stays recorded; the next run goes on from there
        if beat is not None:
            beat.stop()
        if own_stop:
            stop.__exit__(None, None, None)
        raise
    finally:
        status.finish(state)
        progress.close()

    peers = {}
    try:
        if info.count > 1:
            # Everyone leaves together: jax.distributed's shutdown waits for every process.
            wait_for(lambda: peer_states(out, run, info, options.peer_stale_s) is not None, poll_s=0.5)
            peers = peer_states(out, run, info, options.peer_stale_s) or {}
    except KeyboardInterrupt:
        state = "interrupted"
    finally:
        if beat is not None:
            beat.stop()
        if own_stop:
            stop.__exit__(None, None, None)
    summary = _finish_primary(out, run, state, info) if info.primary else None
    events = status.events
    failed = sum(1 for e in events.values() if e["status"] == "failed")
    done = sum(1 for e in events.values() if e["status"] == "done")
    left = mine - done - failed
    elapsed = time.monotonic() - started
    this = f"this process: {done} done, {failed} failed, {left} left in {elapsed:.0f}s" if info.count > 1 else ""
    if summary is not None:
        line = counts_line(summary) + f"; summary in {out / 'summary.md'}"
        progress.write(line + (f" ({this})" if this else ""))
    else:
        progress.write(this)
    if state == "interrupted":
        progress.write("interrupted: run the same command again to continue (photos done are kept)")
    progress.event("end", state=state, done=done, failed=failed, left=left, elapsed_s=round(elapsed, 1))
    code = stop.exit_status if state == "interrupted" else (1 if failed else 0)
    leave_now = info.count > 1 and (state != "complete" or any(v != "complete" for v in peers.values()))
    departure = Departure(out, run, info, options.peer_stale_s) if leave_now else None
    return JobResult(state, code, events, summary, leave_now, departure)


def _run_batch(out, runner, batch: PlannedBatch, loaded, entries, status: StatusLog, progress: Progress,
               stop: StopSignals, info: ProcessInfo, lockstep: bool, options: JobOptions, round_batches=None) -> None:
    from jaxprotect.seeds import photo_key

    tasks = []
    for pid, got in loaded:
        name = entries[pid]["name"]
        if isinstance(got, Exception):
            status.record(pid, "failed", reason=_reason(got), error_type=type(got).__name__)
            progress.write(f"FAILED {name}: [{type(got).__name__}] {_reason(got)}")
            progress.photo_done(status="failed", photo=name)
            continue
        tasks.append(PhotoTask(name, entries[pid]["stem"], got, photo_key(options.seed, got), pid))
    if not tasks and not lockstep:
        return
    control = _Control(out, stop, info, lockstep, batch, options.checkpoint_every, entries, round_batches)
    try:
        outcomes = runner.protect(tasks, progress, control)
    finally:
        if control.checkpoint is not None:
            control.checkpoint.wait()
    stopped = False
    for task, outcome in zip(tasks, outcomes):
        if isinstance(outcome, StopRequested):
            stopped = True
            continue
        try:
            if isinstance(outcome, Exception):
                raise outcome
            outputs = write_outputs(out, task, outcome, runner, options.image_format)
            status.record(task.id, "done", outputs=outputs, verdict=outcome.verdict,
                          seconds=outcome.report.get("seconds"))
            progress.write(outcome.summary)
            progress.photo_done(photo=task.path)
        except Exception as e:  # noqa: BLE001 - one photo's failure never stops the batch
            if os.environ.get("JAXPROTECT_DEBUG") and not isinstance(e, PhotoError):
                raise
            status.record(task.id, "failed", reason=_reason(e), error_type=type(e).__name__)
            progress.write(f"FAILED {task.path}: [{type(e).__name__}] {_reason(e)}")
            progress.photo_done(status="failed", photo=task.path)
    if control.checkpoint is not None and not stopped:
        control.checkpoint.remove()
    if stopped:
        raise StopRequested
