"""Where and how jaxprotect's compiled steps run: device meshes, the compiled-step cache, memory release.

Every per-photo array is split over a 1-D mesh named ``"batch"`` on its leading axis; network
params are replicated. A mesh may span several JAX processes (``jax.distributed``): each process
then passes only its own photos (its *local* rows, the same number on every process) to
:func:`put_batched`, which assembles the global array with
``jax.make_array_from_process_local_data``, and reads results back with :func:`local_rows`.
Method steps are written for a local batch and wrapped in ``jax.shard_map`` (photos never interact, so there is no communication), then jit-compiled
(:func:`over_batch`). :func:`compiled` lowers and compiles a jitted step once per argument
signature and keeps a bounded number of executables.
"""
from __future__ import annotations

import collections
import ctypes
import gc
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = [
    "AXIS",
    "batch_mesh",
    "padded_size",
    "pad_batch",
    "put_batched",
    "put_replicated",
    "local_rows",
    "local_batch",
    "spans_processes",
    "over_batch",
    "compiled",
    "clear_compiled",
    "release_memory",
    "enable_compile_cache",
    "configure_cpu_dispatch",
]

AXIS = "batch"
_MAX_COMPILED = 32


def batch_mesh(devices: Sequence | None = None) -> Mesh:
    """A 1-D mesh named ``"batch"`` over ``devices`` (default: all of ``jax.devices()``)."""
    return Mesh(np.asarray(list(devices) if devices is not None else jax.devices()), (AXIS,))


def spans_processes(mesh: Mesh) -> bool:
    """Whether ``mesh`` has devices of other JAX processes than this one."""
    me = jax.process_index()
    return any(d.process_index != me for d in mesh.devices.flat)


def _local_device_count(mesh: Mesh) -> int:
    me = jax.process_index()
    return sum(1 for d in mesh.devices.flat if d.process_index == me)


def padded_size(batch: int, mesh: Mesh) -> int:
    """Smallest multiple of this process's number of mesh devices (the mesh size in a
    one-process run) that holds ``batch`` local photos."""
    n = _local_device_count(mesh)
    return -(-batch // n) * n


def pad_batch(tree, batch: int, size: int):
    """Repeat the last photo of every leaf (leading axis ``batch``) up to ``size`` photos."""
    if size == batch:
        return tree
    return jax.tree.map(lambda x: jnp.concatenate([jnp.asarray(x)] + [jnp.asarray(x)[-1:]] * (size - batch)), tree)


def _from_local(sharding: NamedSharding, x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:  # already global (computed from global inputs)
        return jax.device_put(x, sharding)
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = jax.make_array_from_process_local_data(sharding, np.asarray(jax.random.key_data(x)))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    return jax.make_array_from_process_local_data(sharding, np.asarray(x))


def put_batched(tree, mesh: Mesh):
    """Place every leaf split along its leading (photo) axis over the mesh. On a mesh that spans
    processes, ``tree`` holds this process's rows only (the same count on every process)."""
    sharding = NamedSharding(mesh, P(AXIS))
    if not spans_processes(mesh):
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: _from_local(sharding, x), tree)


def put_replicated(tree, mesh: Mesh):
    """Place every leaf whole on every device of the mesh (every process passes the same values)."""
    sharding = NamedSharding(mesh, P())
    if not spans_processes(mesh):
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: jax.device_put(np.asarray(x), sharding), tree)


def local_rows(x) -> np.ndarray:
    """This process's rows of a per-photo array (split on its leading axis) as a host array:
    the whole array in a one-process run."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(x)
    shards = {s.index[0].start or 0: s for s in x.addressable_shards}
    return np.concatenate([np.asarray(shards[k].data) for k in sorted(shards)])


def local_batch(tree, batch: int):
    """The first ``batch`` local rows of every leaf: device slices when the arrays are this
    process's alone, host arrays (:func:`local_rows`) when they span processes."""
    def take(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return local_rows(x)[:batch]
        return x[:batch]

    return jax.tree.map(take, tree)


def over_batch(fn: Callable, mesh: Mesh, batched: Sequence[bool], donate: Sequence[int] = ()) -> Callable:
    """``jit(shard_map(fn))``: argument i is split over photos when ``batched[i]``, else
    replicated; every output is per photo (split on its leading axis). ``donate``: argument
    indices whose buffers may be reused (the optimiser state)."""
    in_specs = tuple(P(AXIS) if b else P() for b in batched)
    mapped = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=P(AXIS), check_vma=False)
    return jax.jit(mapped, donate_argnums=tuple(donate))


_COMPILED: collections.OrderedDict = collections.OrderedDict()


def _signature(args) -> tuple:
    leaves, tree = jax.tree.flatten(args)
    return tree, tuple((np.shape(x), jnp.result_type(x), getattr(x, "sharding", None), getattr(x, "weak_type", None))
                       for x in leaves)


def compiled(fn: Callable, *args) -> Callable:
    """The compiled executable of the jitted ``fn`` for arguments shaped like ``args``.

    Compiled once per (function, argument signature); the last 32 executables are kept (least
    recently used first out; :func:`clear_compiled` empties the cache). Freed heap is handed back
    to the OS before and after compiling (:func:`release_memory`): otherwise the allocator keeps
    the compiler's working memory and the previous step's buffers, and the next step's buffers
    come on top of them (~0.7-1.7 GiB more peak RSS at 1024 px).
    """
    key = (fn, _signature(args))
    exe = _COMPILED.get(key)
    if exe is None:
        release_memory()
        exe = fn.lower(*args).compile()
        release_memory()
        _COMPILED[key] = exe
        while len(_COMPILED) > _MAX_COMPILED:
            _COMPILED.popitem(last=False)
    else:
        _COMPILED.move_to_end(key)
    return exe


def clear_compiled() -> None:
    """Forget every compiled executable (their memory is freed when nothing else holds them)."""
    _COMPILED.clear()
    release_memory()


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so a network dropped between
    stages or the compiler's working memory stops counting in the RSS: glibc ``malloc_trim(0)``,
    or with jemalloc preloaded (see docs/clip2protect.md) a purge of all arenas."""
    gc.collect()
    try:
        process = ctypes.CDLL(None)
    except OSError:
        return
    mallctl = getattr(process, "mallctl", None)
    if mallctl is not None:  # jemalloc: MALLCTL_ARENAS_ALL = 4096
        mallctl(b"arena.4096.purge", None, None, None, ctypes.c_size_t(0))
    trim = getattr(process, "malloc_trim", None)
    if trim is not None:
        trim(0)


def enable_compile_cache() -> str | None:
    """Persist XLA compilations across runs in ``$JAXPROTECT_XLA_CACHE`` (default
    ``~/.cache/jaxprotect/xla``; ``0`` turns it off): the 1024 px steps take minutes to compile on
    CPU. Returns the folder, or None when off or not writable."""
    folder = os.environ.get("JAXPROTECT_XLA_CACHE", os.path.expanduser("~/.cache/jaxprotect/xla"))
    if not folder or folder == "0":
        return None
    try:
        os.makedirs(folder, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 5.0)
    except (OSError, AttributeError):
        return None
    return folder


def configure_cpu_dispatch(mode: str | None = None) -> str | None:
    """Choose how XLA's CPU client runs programs: ``"inline"`` (on the calling thread, the call returns
    when the program is done) or ``"async"`` (JAX's default: queued on a worker thread). ``mode`` None
    reads ``$JAXPROTECT_CPU_DISPATCH`` (default ``inline``). Must run before JAX creates its backends
    (the ``jaxprotect`` command calls it first); returns the mode set, or None when too late.

    jaxprotect's loops wait for every step anyway. Asynchronously, XLA's CPU client marks a step's
    outputs ready a moment before it frees the step's scratch buffer (2 GiB for a 1024 px fine-tuning
    step), so the next step can allocate its own while the last one is still held; an allocator that
    keeps freed pages (jemalloc as docs/clip2protect.md sets it) then holds both for good. Inline, the
    buffer is freed before the call returns. Only non-parallel programs are affected.
    """
    from jax._src import xla_bridge

    mode = mode or os.environ.get("JAXPROTECT_CPU_DISPATCH", "inline")
    if mode not in ("inline", "async"):
        raise ValueError(f"CPU dispatch must be 'inline' or 'async', got {mode!r}")
    if xla_bridge.backends_are_initialized():
        return None
    jax.config.update("jax_cpu_enable_async_dispatch", mode == "async")
    return mode
