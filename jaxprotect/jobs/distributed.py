"""Running one job over many hosts: ``jax.distributed`` set-up, agreement between processes, exit.

Every host runs the same command. :func:`initialize` connects the processes: from the
environment on TPU pods, Slurm and Open MPI (``auto=True``), or from ``--coordinator HOST:PORT
--num-processes N --process-id I`` anywhere else. It must run before anything touches a JAX
device. On CPU the collectives go through gloo.

JAX's coordination service stops every process when one of them dies without warning (after the
heartbeat timeout; at once when process 0, which hosts the service, dies). A process that stops
on a signal therefore leaves with :func:`exit_now` after its state is written, and process 0
leaves last (:func:`wait_for`), so that no process is torn down while it saves.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Callable

import numpy as np

__all__ = ["ProcessInfo", "initialize", "process_info", "any_process", "all_processes", "broadcast_json",
           "wait_for", "exit_now"]


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """This process's ``index`` among ``count`` JAX processes."""

    index: int = 0
    count: int = 1

    @property
    def primary(self) -> bool:
        """Process 0: the one that writes the manifest and the summaries."""
        return self.index == 0


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               *, auto: bool = False, heartbeat_timeout_s: int = 100) -> ProcessInfo:
    """Connect this process to the others (``jax.distributed.initialize``) and return its place.

    ``coordinator`` "HOST:PORT" of process 0, with ``num_processes`` and ``process_id``, all three
    or none; ``auto`` takes them from the environment (TPU pod, Slurm, Open MPI). Neither: a
    one-process run, nothing to connect. Raises ``ValueError`` with one clear line on a bad
    combination.
    """
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        raise ValueError("--coordinator, --num-processes and --process-id go together (all three, or none)")
    if not any(given) and not auto:
        return ProcessInfo()
    if all(given):
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ValueError(f"--process-id must be in [0, {num_processes}), got {process_id}")
        if ":" not in coordinator:
            raise ValueError(f"--coordinator must be HOST:PORT, got {coordinator!r}")
    import jax

    # One source of stop requests (jaxprotect.jobs.signals), not the preemption notifier's own handler.
    jax.config.update("jax_enable_preemption_service", False)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if all(given):
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   heartbeat_timeout_seconds=heartbeat_timeout_s)
    else:
        jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat_timeout_s)
    return process_info()


def process_info() -> ProcessInfo:
    """This process's :class:`ProcessInfo` (index 0 of 1 unless ``jax.distributed`` is set up)."""
    import jax

    return ProcessInfo(jax.process_index(), jax.process_count())


def _gather(values: np.ndarray) -> np.ndarray:
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(values))


def any_process(flag: bool, info: ProcessInfo) -> bool:
    """Whether ``flag`` is True on any process (a collective: every process must call it at the same point)."""
    if info.count == 1:
        return bool(flag)
    return bool(_gather(np.array([int(bool(flag))], np.int32)).any())


def all_processes(flag: bool, info: ProcessInfo) -> bool:
    """Whether ``flag`` is True on every process (a collective, like :func:`any_process`)."""
    if info.count == 1:
        return bool(flag)
    return bool(_gather(np.array([int(bool(flag))], np.int32)).all())


def broadcast_json(value, info: ProcessInfo):
    """Process 0's ``value`` (JSON-able) on every process (a collective)."""
    if info.count == 1:
        return value
    import json

    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value).encode(), np.uint8) if info.primary else np.zeros(0, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.array([data.size], np.int64))[0])
    buf = np.zeros(size, np.uint8)
    if info.primary:
        buf[:] = data
    out = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    return json.loads(out.tobytes().decode())


def wait_for(condition: Callable[[], bool], *, stop: Callable[[], bool] = lambda: False, timeout_s: float | None = None,
             poll_s: float = 0.5) -> bool:
    """Poll ``condition()`` until it holds (True), ``stop()`` holds or ``timeout_s`` passed (False).
    Interruptible: unlike a collective barrier, a signal is handled between polls."""
    start = time.monotonic()
    while not condition():
        if stop() or (timeout_s is not None and time.monotonic() - start > timeout_s):
            return False
        time.sleep(poll_s)
    return True


def exit_now(status: int) -> None:
    """Leave at once with ``status`` after flushing the console (skips ``jax.distributed``'s
    shutdown barrier, which would wait for processes that are gone and then abort)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
