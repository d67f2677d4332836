"""Timing and memory helpers shared by the two sides of ``speed_comparison.py`` (no torch or jax here).

Each side runs in its own fresh process; :func:`measure` times one stage there: the first call
(compilation for jax, allocator warm-up for torch), ``warmup`` more calls, then ``runs`` timed calls,
recording wall and process CPU seconds (all threads), the 1-minute load average around them, the
share of the machine's CPU time stolen by the hypervisor during them (other guests of the host, which
the load average does not see), the process's peak resident memory (VmHWM, set-up and compilation included) and the peak during the timed
calls alone (VmHWM reset before them).
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FFHQ_PHOTO = ROOT.parent / "shared" / "assets" / "faces" / "ffhq_sample" / "input_img.jpg"
FACE_BOX_1024 = (244.0, 187.0, 764.0, 891.0)  # the spec's fixed FFHQ-like MTCNN box (x0, y0, x1, y1)
RESULT_PREFIX = "RESULT "


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (VmHWM = peak RSS, VmRSS = current), -1 where unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def cpu_counters() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from ``/proc/stat``; None where unavailable."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice, already counted in user/nice]
    return (fields[7], sum(fields[:8])) if len(fields) >= 8 else None


def steal_percent(before, after) -> float | None:
    """Percent of all CPU time between two :func:`cpu_counters` readings that the hypervisor stole."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return 100.0 * (after[0] - before[0]) / (after[1] - before[1])


def measure(fn, runs: int, warmup: int = 1) -> dict:
    """Time ``fn()`` (which must wait for its result): first call, ``warmup`` calls, ``runs`` timed calls.

    Returns a dict with ``first_call`` (wall, cpu), ``wall_s``/``cpu_s`` lists, their medians, min and
    max, ``load1`` before and after the timed calls, ``steal_pct`` (CPU time stolen by the hypervisor
    during them, percent; None where unknown), ``vmhwm_kib`` (peak RSS of the whole process),
    ``vmhwm_steps_kib`` (peak RSS during the timed calls; None where it cannot be reset) and
    ``vmrss_after_kib``.
    """
    t, c = time.perf_counter(), time.process_time()
    fn()
    first = (time.perf_counter() - t, time.process_time() - c)
    for _ in range(warmup):
        fn()
    peak_setup = status_kib("VmHWM")
    steady = reset_peak_rss()
    load_before = os.getloadavg()[0]
    counters = cpu_counters()
    walls, cpus = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return {
        "first_call": first, "wall_s": walls, "cpu_s": cpus,
        "wall_median": statistics.median(walls), "wall_min": min(walls), "wall_max": max(walls),
        "cpu_median": statistics.median(cpus), "cpu_min": min(cpus), "cpu_max": max(cpus),
        "load1_before": load_before, "load1_after": os.getloadavg()[0],
        "steal_pct": steal_percent(counters, cpu_counters()),
        "vmhwm_kib": max(peak_setup, status_kib("VmHWM")),
        "vmhwm_steps_kib": status_kib("VmHWM") if steady else None, "vmrss_after_kib": status_kib("VmRSS"),
    }


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux ``clear_refs`` 5), so that the peak of the
    timed calls alone can be read afterwards; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def photo(size: int | None = None):
    """The FFHQ sample photo as uint8 [H, W, 3] (resized to ``size`` x ``size`` when given), or a seeded
    random image of that size where the shared assets are absent."""
    import numpy as np
    from PIL import Image

    if FFHQ_PHOTO.exists():
        img = Image.open(FFHQ_PHOTO).convert("RGB")
        if size is not None:
            img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img)
    size = size or 1024
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)


def emit(result: dict) -> None:
    """Print the worker's result as the one line the driver reads."""
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


def stylegan2_inputs(size: int, batch: int):
    """Seeded W+ [batch, n_latent, 512] and noise maps (one [1, r, r] per layer, shared by the batch),
    float32 numpy, identical on both sides."""
    import math

    import numpy as np

    log_size = int(math.log2(size))
    rng = np.random.default_rng(0)
    wplus = rng.standard_normal((batch, 2 * log_size - 2, 512)).astype(np.float32)
    noise = [rng.standard_normal((1, r, r)).astype(np.float32)
             for r in (2 ** ((i + 5) // 2) for i in range((log_size - 2) * 2 + 1))]
    return wplus, noise


def unit_images(batch: int, size: int, seed: int = 1):
    """Seeded images [batch, size, size, 3] float32 in [0, 1] (targets, stand-in photos)."""
    import numpy as np

    return np.random.default_rng(seed).uniform(0, 1, (batch, size, size, 3)).astype(np.float32)
