"""Mid-optimisation state of a batch of photos, saved with orbax ``CheckpointManager``.

A batch that steps together keeps its state under ``OUT/.jaxprotect/batches/<batch id>/``:
``batch.json`` (its photo ids, in order) and one orbax ``CheckpointManager`` per stage
(``fine-tune/<step>/``, ``search/<step>/``), each keeping its last step. A step holds the
host arrays the method hands out (:func:`jaxprotect.methods.clip2protect.pipeline.protect_batch`'s
snapshots: lists of arrays and dicts of arrays) and a small JSON item. Saves are asynchronous
(orbax writes in a background thread while the next steps run); a save waits for the previous
one of the same batch, and :meth:`BatchCheckpoint.wait` for the last.

Each process saves only its own photos' rows, with a manager restricted to itself (orbax
``MultiprocessingOptions(primary_host=me, active_processes={me})``), so the state of a photo
does not depend on how many processes ran it: a run with another number of processes restores
a batch on whichever process the plan gives it to. The batch is identified by its photos, not by
the process.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from jaxprotect.io.naming import write_json

__all__ = ["STAGES", "batches_dir", "batch_id", "BatchCheckpoint", "list_batches", "remove_batches", "folder_bytes"]

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


class BatchCheckpoint:
    """The saved state of one batch of photos (see the module docstring)."""

    def __init__(self, out_dir, photo_ids, *, process: int = 0, sha256=None):
        self.photo_ids = list(photo_ids)
        self.sha256 = list(sha256) if sha256 is not None else None
        self.folder = (batches_dir(out_dir) / batch_id(self.photo_ids)).absolute()  # orbax wants absolute paths
        self.process = process
        self._managers: dict = {}
        self._pending = None

    def _manager(self, stage: str):
        import orbax.checkpoint as ocp

        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        if stage not in self._managers:
            folder = self.folder / stage
            folder.mkdir(parents=True, exist_ok=True)
            options = ocp.CheckpointManagerOptions(
                max_to_keep=1, create=False, enable_async_checkpointing=True,
                multiprocessing_options=ocp.options.MultiprocessingOptions(
                    primary_host=self.process, active_processes={self.process},
                    barrier_sync_key_prefix=f"{self.folder.name}-{stage}"),
            )
            self._managers[stage] = ocp.CheckpointManager(folder, options=options, item_names=("arrays", "info"))
        return self._managers[stage]

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

    def wait(self) -> None:
        """Block until the last save is on disk."""
        if self._pending is not None:
            self._pending.wait_until_finished()
            self._pending = None

    def latest(self) -> tuple[str, int] | None:
        """(stage, step) of the most advanced saved state: the search's if any, else the fine-tuning's."""
        self.wait()
        return _latest(self.folder)

    def restore(self, stage: str, step: int | None = None):
        """(arrays, info) saved for ``stage`` at ``step`` (default: its last step), as host arrays."""
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
        self.wait()
        for m in self._managers.values():
            m.close()
        self._managers.clear()
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


def remove_batches(out_dir, keep: set) -> int:
    """Delete the saved state of every batch whose id is not in ``keep``; returns how many."""
    root = batches_dir(out_dir)
    n = 0
    if root.is_dir():
        for folder in root.iterdir():
            if folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)
                n += 1
    return n


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
