"""Spreading photos over devices: a 1-D ``jax.sharding`` mesh over the batch axis.

Every per-photo array is split on its leading axis; networks' params are replicated. Stage
functions are written for a local batch and wrapped in ``jax.shard_map`` (no communication: the
photos never interact), then jit-compiled.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = ["AXIS", "batch_mesh", "compiled", "over_batch", "put_batched", "put_replicated", "pad_batch", "padded_size"]

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
    return jax.tree.map(lambda x: jnp.concatenate([jnp.asarray(x)] + [jnp.asarray(x)[-1:]] * (size - batch)), tree)


def put_batched(tree, mesh: Mesh):
    """Place every leaf split along its leading (photo) axis over the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, P(AXIS)))


def put_replicated(tree, mesh: Mesh):
    """Place every leaf whole on every device of the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


_COMPILED: dict = {}


def _signature(args) -> tuple:
    leaves, tree = jax.tree.flatten(args)
    return tree, tuple((np.shape(x), jnp.result_type(x), getattr(x, "sharding", None), getattr(x, "weak_type", None))
                       for x in leaves)


def compiled(fn: Callable, *args) -> Callable:
    """The compiled executable of the jitted ``fn`` for arguments shaped like ``args`` (compiled
    once per function and signature). Freed heap is handed back to the OS before and after
    compiling (:func:`~jaxprotect.methods.clip2protect.networks.release_memory`): otherwise the
    allocator keeps the compiler's working memory and the previous step's buffers, and the next
    step's buffers come on top of them (~0.7-1.7 GiB more peak RSS at 1024 px)."""
    key = (fn, _signature(args))
    exe = _COMPILED.get(key)
    if exe is None:
        from jaxprotect.methods.clip2protect.networks import release_memory

        release_memory()
        exe = _COMPILED[key] = fn.lower(*args).compile()
        release_memory()
    return exe


def over_batch(fn: Callable, mesh: Mesh, batched: Sequence[bool], donate: Sequence[int] = ()) -> Callable:
    """``jit(shard_map(fn))``: argument i is split over photos when ``batched[i]``, else
    replicated; every output is per photo (split on its leading axis). ``donate``: argument
    indices whose buffers may be reused (the optimiser state)."""
    in_specs = tuple(P(AXIS) if b else P() for b in batched)
    mapped = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=P(AXIS), check_vma=False)
    return jax.jit(mapped, donate_argnums=tuple(donate))
