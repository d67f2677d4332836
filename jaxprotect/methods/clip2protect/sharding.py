"""Spreading photos over devices: a 1-D ``jax.sharding`` mesh over the batch axis.

Every per-photo array is split on its leading axis; networks' params are replicated. Stage
functions are written for a local batch and wrapped in ``jax.shard_map`` (no communication: the
photos never interact), then jit-compiled.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = ["AXIS", "batch_mesh", "over_batch", "put_batched", "put_replicated", "pad_batch", "padded_size"]

AXIS = "batch"


def batch_mesh(devices: Sequence | None = None) -> Mesh:
    """A 1-D mesh named ``"batch"`` over ``devices`` (default: all of ``jax.devices()``)."""
    return Mesh(np.asarray(list(devices) if devices is not None else jax.devices()), (AXIS,))


def padded_size(batch: int, mesh: Mesh) -> int:
    """Smallest multiple of the mesh size that holds ``batch`` photos."""
    n = mesh.devices.size
    return -(-batch // n) * n


def pad_batch(tree, batch: int, size: int):
    """Repeat the last photo of every leaf (leading axis ``batch``) up to ``size`` photos."""
    if size == batch:
        return tree
    return jax.tree.map(lambda x: np.concatenate([np.asarray(x)] + [np.asarray(x)[-1:]] * (size - batch)), tree)


def put_batched(tree, mesh: Mesh):
    """Place every leaf split along its leading (photo) axis over the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, P(AXIS)))


def put_replicated(tree, mesh: Mesh):
    """Place every leaf whole on every device of the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def over_batch(fn: Callable, mesh: Mesh, batched: Sequence[bool], donate: Sequence[int] = ()) -> Callable:
    """``jit(shard_map(fn))``: argument i is split over photos when ``batched[i]``, else
    replicated; every output is per photo (split on its leading axis). ``donate``: argument
    indices whose buffers may be reused (the optimiser state)."""
    in_specs = tuple(P(AXIS) if b else P() for b in batched)
    mapped = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=P(AXIS), check_vma=False)
    return jax.jit(mapped, donate_argnums=tuple(donate))
