"""LPIPS-VGG / -Alex timing on this machine: forward, and forward+backward w.r.t. one image.

    python experiments/bench_lpips.py [--size 256] [--batch 1] [--runs 5]

The CLIP2Protect fine-tuning step evaluates LPIPS-VGG on 256x256 pairs and differentiates through it,
so that is the default. Weights are random (timing does not depend on their values; the real trunk is
user-supplied). Writes experiments/results/lpips_bench.{md,json}. Expect a few seconds per network.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxprotect.checkpoints.state_dict import unflatten
from jaxprotect.models.lpips import LPIPS, LPIPSModule
from jaxprotect.nn.torch_layers import param_shapes

OUT = Path(__file__).parent / "results"


def _random_lpips(arch: str) -> LPIPS:
    rng = np.random.default_rng(0)
    x = jnp.zeros((1, 64, 64, 3))
    shapes = param_shapes(LPIPSModule(arch), x, x)
    flat = {k: (rng.standard_normal(s) / np.sqrt(np.prod(s[1:]) if len(s) > 1 else 10.0)).astype(np.float32)
            for k, s in shapes.items()}
    return LPIPS(f"lpips_{arch}", LPIPSModule(arch), unflatten(flat))


def _time(fn, *args, runs):
    jax.block_until_ready(fn(*args))  # compile + warm-up
    jax.block_until_ready(fn(*args))
    walls, cpus = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    shape = (args.batch, args.size, args.size, 3)
    a = jnp.tanh(jax.random.normal(jax.random.key(1), shape))
    b = jnp.tanh(jax.random.normal(jax.random.key(2), shape))
    rows = []
    for arch in ("vgg", "alex"):
        l = _random_lpips(arch)
        fwd = jax.jit(l.apply)
        bwd = jax.jit(jax.value_and_grad(lambda p, x, y: jnp.sum(l.apply(p, x, y)), argnums=1))
        for what, fn in (("forward", fwd), ("forward+backward (grad wrt a)", bwd)):
            wall, cpu = _time(fn, l.params, a, b, runs=args.runs)
            rows.append({"net": arch, "what": what, "wall_s": wall, "cpu_s": cpu})
    meta = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPU (shared), {jax.devices()[0].platform}",
        "jax": jax.__version__,
        "loadavg_after": os.getloadavg(),
        "input": f"{shape} NHWC float32",
        "runs": args.runs,
        "statistic": "median after 2 warm-up calls (the first compiles)",
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "lpips_bench.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = ["# LPIPS timing (experiments/bench_lpips.py)", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += ["", "| net | what | wall s (median) | process CPU s (median) |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['net']} | {r['what']} | {r['wall_s']:.4f} | {r['cpu_s']:.4f} |" for r in rows]
    (OUT / "lpips_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
