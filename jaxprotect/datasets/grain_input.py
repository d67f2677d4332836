"""grain input over dataset records: each JAX process reads its own contiguous share, in a fixed
order, in batches, through an iterator whose state can be saved and restored.

:func:`input_pipeline` takes any random-access source (``len`` and ``[i]``; a
:class:`~jaxprotect.datasets.Records` from :func:`~jaxprotect.datasets.load`, a raw
``builder.as_data_source(split)``, or a plain list of records) and, optionally, the record
indices to read (e.g. the photos a job has not done yet). The selected indices are sorted and
cut into ``process_count`` contiguous shares (:func:`shard_bounds`); process ``p`` reads share
``p`` in ascending index order, ``batch_size`` records at a time. Each element is a
:class:`Batch` of record indices and records; records are NOT stacked (photos differ in size, and
numpy would silently strip trailing NUL bytes from encoded images), so decoding and stacking are
the caller's.

``iter(pipeline)`` is a grain ``DatasetIterator``: ``get_state()`` is a small JSON-ready dict,
``set_state(state)`` resumes exactly after the last batch returned, and grain's orbax handler
(``grain.checkpoint.CheckpointSave`` / ``CheckpointRestore`` with ``orbax.checkpoint``) saves it
as one file per process. A state only fits a pipeline with the same source length, selected
indices, process index and count, batch size and padding; set_state refuses any other, naming
the difference. A job restarted with another process count re-plans from its own manifest
(ask for the indices not done yet) rather than restoring the old iterators.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import grain
import numpy as np

__all__ = ["Batch", "shard_bounds", "select_indices", "process_indices", "input_pipeline"]


class Batch(NamedTuple):
    """``indices``: int64 ``[B]`` record indices (``-1`` marks padding); ``records``: the ``B``
    records in the same order (``None`` for padding)."""

    indices: np.ndarray
    records: tuple


def shard_bounds(count: int, process_index: int, process_count: int) -> tuple[int, int]:
    """``(start, stop)``: the contiguous share of ``count`` items that process ``process_index`` of
    ``process_count`` takes: ``[floor(p*count/P), floor((p+1)*count/P))``. Shares differ by at most
    one item, cover every item exactly once, and stay in order."""
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, process_count={process_count})")
    return process_index * count // process_count, (process_index + 1) * count // process_count


def select_indices(count: int, indices: Sequence[int] | None = None) -> np.ndarray:
    """The record indices to read, sorted: all of ``range(count)``, or ``indices`` checked to be
    whole numbers in ``[0, count)`` without repeats (``ValueError`` names the offenders)."""
    if indices is None:
        return np.arange(count, dtype=np.int64)
    chosen = np.asarray(indices)
    if chosen.ndim != 1 or (chosen.size and not np.issubdtype(chosen.dtype, np.integer)):
        raise ValueError(f"indices must be a 1-D sequence of integers, got {chosen.dtype} shape {chosen.shape}")
    chosen = np.sort(chosen.astype(np.int64))
    bad = chosen[(chosen < 0) | (chosen >= count)]
    if bad.size:
        raise ValueError(f"indices out of range [0, {count}): {bad[:5].tolist()}")
    repeated = chosen[1:][chosen[1:] == chosen[:-1]]
    if repeated.size:
        raise ValueError(f"indices repeated: {np.unique(repeated)[:5].tolist()}")
    return chosen


def process_indices(selected: np.ndarray, process_index: int, process_count: int, *,
                    batch_size: int, equal_batches: bool = False) -> np.ndarray:
    """Process ``process_index``'s share of ``selected`` (see :func:`shard_bounds`). With
    ``equal_batches`` it is padded with ``-1`` to the number of full batches that the LARGEST
    share needs, so every process runs the same number of equally sized steps (what a
    multi-process ``jax.make_array_from_process_local_data`` step needs)."""
    start, stop = shard_bounds(len(selected), process_index, process_count)
    share = selected[start:stop]
    if not equal_batches:
        return share
    largest = -(-len(selected) // process_count)
    steps = -(-largest // batch_size)
    return np.concatenate([share, np.full(steps * batch_size - len(share), -1, np.int64)])


def _fetch(source, indices: list[int]) -> list:
    valid = [i for i in indices if i >= 0]
    getitems = getattr(source, "__getitems__", None)
    got = list(getitems(valid)) if getitems is not None and valid else [source[i] for i in valid]
    records = iter(got)
    return [next(records) if i >= 0 else None for i in indices]


def _plan(source_len: int, selected: np.ndarray, process_index: int, process_count: int, batch_size: int,
          equal_batches: bool) -> dict[str, Any]:
    digest = hashlib.sha256(np.ascontiguousarray(selected, np.int64).tobytes()).hexdigest()
    return {"source_len": int(source_len), "selected": len(selected), "selected_sha256": digest,
            "process_index": int(process_index), "process_count": int(process_count),
            "batch_size": int(batch_size), "equal_batches": bool(equal_batches)}


class _PlanCheckedIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator, plan: dict[str, Any]):
        super().__init__(parent)
        self._plan = plan

    def __next__(self) -> Batch:
        return next(self._parent)

    def get_state(self) -> dict[str, Any]:
        return {"plan": dict(self._plan), "input": self._parent.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        saved = state.get("plan") if isinstance(state, dict) else None
        if saved != self._plan:
            if not isinstance(saved, dict):
                raise ValueError("not a jaxprotect input state (no 'plan' entry)")
            diff = [f"{k}: saved {saved.get(k)!r}, now {v!r}" for k, v in self._plan.items() if saved.get(k) != v]
            raise ValueError("the saved input state belongs to another pipeline: " + "; ".join(diff))
        self._parent.set_state(state["input"])


class _PlanCheckedDataset(grain.IterDataset):
    def __init__(self, parent: grain.IterDataset, plan: dict[str, Any]):
        super().__init__(parent)
        self._plan = plan

    def __iter__(self) -> grain.DatasetIterator:
        return _PlanCheckedIterator(self._parent.__iter__(), self._plan)

    def __str__(self) -> str:
        return f"_PlanCheckedDataset(process {self._plan['process_index']} of {self._plan['process_count']})"


def input_pipeline(source, *, batch_size: int, indices: Sequence[int] | None = None,
                   process_index: int | None = None, process_count: int | None = None,
                   equal_batches: bool = False, threads: int = 2, prefetch: int = 2) -> grain.IterDataset:
    """A grain ``IterDataset`` of :class:`Batch` es over this process's share of ``source``.

    ``source``: anything with ``len`` and ``[i]`` (``__getitems__`` is used when present).
    ``indices``: only these records (any order; read sorted); default all. ``process_index`` /
    ``process_count``: default ``jax.process_index()`` / ``jax.process_count()``. Batches hold
    ``batch_size`` records, the last one fewer, unless ``equal_batches`` pads every process to the
    same number of full batches (padding: index ``-1``, record ``None``). ``threads`` reader
    threads fill a buffer of ``prefetch`` batches (each batch holds its records' bytes in memory).
    Deterministic: the same arguments give the same batches in the same order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    selected = select_indices(len(source), indices)
    mine = process_indices(selected, process_index, process_count, batch_size=batch_size,
                           equal_batches=equal_batches)
    plan = _plan(len(source), selected, process_index, process_count, batch_size, equal_batches)

    def read(batch_indices: list[int]) -> Batch:
        return Batch(np.asarray(batch_indices, np.int64), tuple(_fetch(source, batch_indices)))

    batches = (
        grain.MapDataset.source(mine.tolist())
        .batch(batch_size, batch_fn=list)
        .map(read)
        .to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch))
    )
    return _PlanCheckedDataset(batches, plan)
