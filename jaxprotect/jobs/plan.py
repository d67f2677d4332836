"""Who protects which photos, in which batches: the plan every process computes from the manifest.

Pending photos are cut, in manifest order, into batches of the runner's batch size; process
``p`` of ``P`` takes the contiguous share ``[floor(p*n/P), floor((p+1)*n/P))`` of the batches
(:func:`jaxprotect.datasets.shard_bounds`, the rule the grain input uses). Batches with saved
mid-optimisation state come first, whole, grouped by the (stage, step) they resume at, and are
shared out the same way within each group. Every process computes the same plan from the same
manifest, so each photo is protected by exactly one process, and a restart with another number
of processes re-plans what is left.

When one batch's steps run on the devices of every process together (``lockstep``), every
process must run the same number of batches starting at the same point: shares are padded with
empty batches (the runner fills them with stand-in photos whose results are dropped), and the
k-th batches of all processes form round k. Saved rounds (state saved by a run with the same
number of processes) come first, each process taking its own batch of the round back.
"""
from __future__ import annotations

import dataclasses

from jaxprotect.datasets.grain_input import shard_bounds

__all__ = ["PlannedBatch", "plan_batches"]


@dataclasses.dataclass(frozen=True)
class PlannedBatch:
    """``photos``: manifest ids, in order (empty: a stand-in batch); ``start``: the (stage, step)
    it resumes at (None: from the beginning); ``saved``: True when its photos have saved state."""

    photos: tuple
    start: tuple | None = None
    saved: bool = False


def _share(items: list, index: int, count: int, lockstep: bool, filler) -> list:
    lo, hi = shard_bounds(len(items), index, count)
    mine = items[lo:hi]
    if lockstep:
        largest = -(-len(items) // count)
        mine = mine + [filler] * (largest - len(mine))
    return mine


def _rounds_first(pending_set: set, rounds: list[dict], index: int, count: int) -> tuple[list, set]:
    out, taken = [], set()
    usable = []
    for r in rounds:
        photos = {p for b in r["batches"] for p in b}
        if r["processes"] == count and photos and photos <= pending_set and not photos & taken:
            usable.append(r)
            taken |= photos
    for r in sorted(usable, key=lambda r: (r["latest"][0] == "search", r["latest"][1], r["id"]), reverse=True):
        out.append(PlannedBatch(tuple(r["batches"][index]), tuple(r["latest"]), bool(r["batches"][index])))
    return out, taken


def plan_batches(pending: list[str], batch_size: int, saved: list[dict], index: int = 0, count: int = 1,
                 lockstep: bool = False, rounds: list[dict] = ()) -> list[PlannedBatch]:
    """The batches process ``index`` of ``count`` runs, in order.

    ``pending``: ids of the photos to protect, in manifest order. ``saved``: batches with saved
    state ({"photos": [ids], "latest": (stage, step)}); one is resumed only when all its photos
    are pending (the caller drops the others). ``rounds`` (``lockstep`` only): saved rounds
    ({"batches": [ids per process], "processes", "latest"}), resumed when made by ``count``
    processes and all their photos are pending. ``batch_size`` >= 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pending_set = set(pending)
    groups: dict = {}
    out: list[PlannedBatch] = []
    taken: set = set()
    if lockstep:
        out, taken = _rounds_first(pending_set, list(rounds), index, count)
    for b in saved:
        if b["photos"] and all(p in pending_set for p in b["photos"]) and not taken & set(b["photos"]):
            point = tuple(b["latest"])
            groups.setdefault(point, []).append(PlannedBatch(tuple(b["photos"]), point, True))
            taken |= set(b["photos"])
    # Most advanced state first (search before fine-tune, later steps first): least work lost if stopped again.
    for point in sorted(groups, key=lambda pt: (pt[0] == "search", pt[1]), reverse=True):
        out += _share(groups[point], index, count, lockstep, PlannedBatch((), point, False))
    fresh = [p for p in pending if p not in taken]
    batches = [PlannedBatch(tuple(fresh[i:i + batch_size])) for i in range(0, len(fresh), batch_size)]
    out += _share(batches, index, count, lockstep, PlannedBatch(()))
    return out
