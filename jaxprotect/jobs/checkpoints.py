"""Mid-optimisation state of a batch of photos, saved with orbax ``CheckpointManager``.

A batch that steps together keeps its state under ``OUT/.jaxprotect/batches/<batch id>/``:
``batch.json`` (its photo ids, in order) and one orbax ``CheckpointManager`` per stage
(``fine-tune/<step>/``, ``search/<step>/``), each keeping its last step. A step holds the
host arrays the method hands out (:func:`jaxprotect.methods.clip2protect.pipeline.protect_batch`'s
snapshots: lists of arrays and dicts of arrays) and a small JSON item. Saves are asynchronous
(orbax writes in a background thread while the next steps run); a save waits for the previous
one of the same batch, and :meth:`BatchCheckpoint.wait` for the last.

In a run over several processes whose batches span every process's devices (a *round*: the
k-th batch of every process, stepping together), orbax saves the round's global arrays
collectively (:class:`RoundCheckpoint` under ``OUT/.jaxprotect/rounds/<round id>/``: every
process writes its own rows; orbax refuses host-local arrays there), with ``round.json`` (every
process's planned photos) and each process's own ``rows.p<i>.json`` (the photos its rows hold,
this host's progress). A round resumes when the job runs again with the same number of
processes (the common case after a pre-emption); with another number its photos start again.
Otherwise (one process) a batch is saved by :class:`BatchCheckpoint`, identified by its photos
only, so any process of any later run can resume it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from jaxprotect.io.naming import write_json

__all__ = ["STAGES", "batches_dir", "batch_id", "BatchCheckpoint", "list_batches", "remove_batches", "folder_bytes",
           "rounds_dir", "round_id", "RoundCheckpoint", "list_rounds", "remove_rounds"]

STAGES = ("fine-tune", "search")


def batches_dir(out_dir) -> Path:
    """Where the batches of job ``out_dir`` keep their state."""
    return Path(out_dir) / ".jaxprotect" / "batches"


def batch_id(photo_ids) -> str:
    """A folder name for the batch of ``photo_ids`` (in order): ``b-<16 hex digits>``."""
    return "b-" + hashlib.sha256("\n".join(photo_ids).encode()).hexdigest()[:16]


def _steps(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())


def _latest(folder: Path) -> tuple[str, int] | None:
    for stage in reversed(STAGES):
        steps = _steps(folder / stage)
        if steps:
            return stage, steps[-1]
    return None


class _StageManagers:
    """One orbax ``CheckpointManager`` per stage under ``self.folder``, and the last save in flight."""

    folder: Path
    _managers: dict
    _pending: object

    def _manager_kwargs(self, ocp) -> dict:
        raise NotImplementedError

    def _manager(self, stage: str):
        import orbax.checkpoint as ocp

        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        if stage not in self._managers:
            folder = self.folder / stage
            folder.mkdir(parents=True, exist_ok=True)
            options = ocp.CheckpointManagerOptions(max_to_keep=1, create=False, enable_async_checkpointing=True)
            self._managers[stage] = ocp.CheckpointManager(folder, options=options, **self._manager_kwargs(ocp))
        return self._managers[stage]

    def wait(self) -> None:
        """Block until the last save is on disk."""
        if self._pending is not None:
            self._pending.wait_until_finished()
            self._pending = None

    def latest(self) -> tuple[str, int] | None:
        """(stage, step) of the most advanced saved state: the search's if any, else the fine-tuning's."""
        self.wait()
        return _latest(self.folder)

    def _close(self) -> None:
        self.wait()
        for m in self._managers.values():
            m.close()
        self._managers.clear()


class BatchCheckpoint(_StageManagers):
    """The saved state of one batch of photos (see the module docstring)."""

    def __init__(self, out_dir, photo_ids, *, sha256=None):
        self.photo_ids = list(photo_ids)
        self.sha256 = list(sha256) if sha256 is not None else None
        self.folder = (batches_dir(out_dir) / batch_id(self.photo_ids)).absolute()  # orbax wants absolute paths
        self._managers: dict = {}
        self._pending = None

    def _manager_kwargs(self, ocp) -> dict:
        return {"item_names": ("arrays", "info")}

    def save(self, stage: str, step: int, arrays, info: dict | None = None) -> None:
        """Save ``arrays`` (a tree of host arrays: dicts and lists) of ``stage`` after ``step`` steps,
        asynchronously; the previous save of this batch is finished first."""
        import orbax.checkpoint as ocp

        if not (self.folder / "batch.json").exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json(self.folder / "batch.json", {"photos": self.photo_ids, "sha256": self.sha256})
        self.wait()
        manager = self._manager(stage)
        manager.save(int(step), args=ocp.args.Composite(arrays=ocp.args.StandardSave(arrays),
                                                        info=ocp.args.JsonSave(dict(info or {}, stage=stage))),
                     force=True)
        self._pending = manager

    def restore(self, stage: str, step: int | None = None, rows: int | None = None):
        """(arrays, info) saved for ``stage`` at ``step`` (default: its last step), as host arrays
        (``rows``: for the same call as :meth:`RoundCheckpoint.restore`; every saved row is returned)."""
        import orbax.checkpoint as ocp

        self.wait()
        manager = self._manager(stage)
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no saved {stage} state in {self.folder}")
        got = manager.restore(int(step), args=ocp.args.Composite(arrays=ocp.args.StandardRestore(),
                                                                 info=ocp.args.JsonRestore()))
        return got["arrays"], got["info"]

    def remove(self) -> None:
        """Delete the batch's saved state (once its photos are written)."""
        self._close()
        shutil.rmtree(self.folder, ignore_errors=True)


def list_batches(out_dir) -> list[dict]:
    """Every batch with saved state in job ``out_dir``: {"id", "photos", "sha256" (of each photo's
    content when it was saved, or None), "latest": (stage, step)}, in folder-name order (batches
    without a finished save are left out)."""
    root = batches_dir(out_dir)
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(root.iterdir()):
        meta = folder / "batch.json"
        latest = _latest(folder)
        if latest is None or not meta.exists():
            continue
        try:
            data = json.loads(meta.read_text())
            photos = data["photos"]
        except (OSError, ValueError, KeyError):
            continue
        out.append({"id": folder.name, "photos": photos, "sha256": data.get("sha256"), "latest": latest})
    return out


def _remove_except(root: Path, keep: set) -> int:
    n = 0
    if root.is_dir():
        for folder in root.iterdir():
            if folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)
                n += 1
    return n


def remove_batches(out_dir, keep: set) -> int:
    """Delete the saved state of every batch whose id is not in ``keep``; returns how many."""
    return _remove_except(batches_dir(out_dir), keep)


def folder_bytes(folder) -> int:
    """Total size of the files under ``folder`` (what a checkpoint occupies on disk)."""
    total = 0
    for root, _, names in os.walk(folder):
        for n in names:
            try:
                total += os.path.getsize(os.path.join(root, n))
            except OSError:
                pass
    return total


def rounds_dir(out_dir) -> Path:
    """Where the rounds of a job over several processes keep their state."""
    return Path(out_dir) / ".jaxprotect" / "rounds"


def round_id(batches) -> str:
    """A folder name for the round whose processes hold ``batches`` (a list of photo-id lists)."""
    text = "\n".join("\t".join(b) for b in batches)
    return "r-" + hashlib.sha256(text.encode()).hexdigest()[:16]


class RoundCheckpoint(_StageManagers):
    """The saved state of one round (see the module docstring): every process calls each method
    at the same point (saves and restores are collective).

    ``batches``: every process's planned photo ids for the round; ``photo_ids``: the photos this
    process's rows hold (its ready ones); ``mesh``: the batch mesh the arrays live on;
    ``index``/``count``: this process's place.
    """

    def __init__(self, out_dir, batches, photo_ids, *, mesh, index: int, count: int, sha256=None):
        self.batches = [list(b) for b in batches]
        self.photo_ids = list(photo_ids)
        self.folder = (rounds_dir(out_dir) / round_id(self.batches)).absolute()
        self.mesh, self.index, self.count, self.sha256 = mesh, index, count, sha256
        self._managers: dict = {}
        self._pending = None

    def _manager_kwargs(self, ocp) -> dict:
        return {"item_handlers": {"arrays": ocp.StandardCheckpointHandler()}}

    def save(self, stage: str, step: int, arrays, info: dict | None = None) -> None:
        """Save ``arrays`` (this process's rows, host arrays with a leading photo axis; the same
        number on every process) as global arrays, asynchronously (collective)."""
        import jax
        import orbax.checkpoint as ocp

        from jaxprotect.runtime import pad_batch, padded_size, put_batched

        self.folder.mkdir(parents=True, exist_ok=True)
        if self.index == 0 and not (self.folder / "round.json").exists():
            write_json(self.folder / "round.json", {"batches": self.batches, "processes": self.count,
                                                    "sha256": self.sha256})
        rows_file = self.folder / f"rows.p{self.index}.json"
        if not rows_file.exists():
            write_json(rows_file, {"photos": self.photo_ids})
        self.wait()
        leaves = jax.tree.leaves(arrays)
        b = len(leaves[0]) if leaves else 0
        glob = put_batched(pad_batch(arrays, b, padded_size(b, self.mesh)), self.mesh)
        manager = self._manager(stage)
        manager.save(int(step), args=ocp.args.Composite(arrays=ocp.args.StandardSave(glob)), force=True)
        self._pending = manager

    def restore(self, stage: str, step: int | None = None, rows: int | None = None):
        """(this process's rows of the arrays saved for ``stage`` at ``step`` as host arrays, {})
        (collective); ``rows``: how many rows to keep (default: all of this process's)."""
        import jax
        import orbax.checkpoint as ocp
        from jax.sharding import NamedSharding, PartitionSpec

        from jaxprotect.runtime import AXIS, local_rows

        self.wait()
        manager = self._manager(stage)
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no saved {stage} state in {self.folder}")
        sharding = NamedSharding(self.mesh, PartitionSpec(AXIS))
        meta = manager.item_metadata(step)["arrays"]
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), meta)
        got = manager.restore(int(step), args=ocp.args.Composite(arrays=ocp.args.StandardRestore(abstract)))
        host = jax.tree.map(lambda x: local_rows(x) if rows is None else local_rows(x)[:rows], got["arrays"])
        return host, {}

    def remove(self) -> None:
        """Delete the round's saved state (collective: process 0 deletes once every process is done with it)."""
        from jaxprotect.jobs.distributed import ProcessInfo, all_processes

        self._close()
        all_processes(True, ProcessInfo(self.index, self.count))  # every process has finished with it
        if self.index == 0:
            shutil.rmtree(self.folder, ignore_errors=True)


def list_rounds(out_dir) -> list[dict]:
    """Every round with saved state in job ``out_dir``: {"id", "batches", "processes", "sha256",
    "latest": (stage, step)}, in folder-name order."""
    root = rounds_dir(out_dir)
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(root.iterdir()):
        latest = _latest(folder)
        try:
            data = json.loads((folder / "round.json").read_text())
        except (OSError, ValueError):
            continue
        if latest is None:
            continue
        out.append({"id": folder.name, "batches": data["batches"], "processes": data["processes"],
                    "sha256": data.get("sha256"), "latest": latest})
    return out


def remove_rounds(out_dir, keep: set) -> int:
    """Delete the saved state of every round whose id is not in ``keep``; returns how many."""
    return _remove_except(rounds_dir(out_dir), keep)
