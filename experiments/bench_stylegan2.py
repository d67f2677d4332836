"""Benchmark: StyleGAN2-1024 generator (config-f, channel_multiplier 2) at batch 1 on this CPU.

Measures, each configuration in a fresh subprocess (so peak RSS is per configuration):
forward (W+ -> image) and forward + backward of ``mean(image**2)`` with respect to W+ and all
17 noise maps, each with and without per-block remat, for both modulated-conv formulations
(``activation`` = the default, ``weight`` = the upstream grouped-conv formulation); plus one
generator fine-tuning step's gradient (w.r.t. all params) for the default formulation.
Weights are random at real size (what the numbers depend on is only the shapes).

Optionally (``--upstream DIR`` = a Clip2Protect checkout) the original PyTorch generator
(``models/stylegan2/model.py``) is timed the same way on the same machine, in its own
subprocess; its one CUDA-only line (``input.cuda()`` in ``op/fused_act.py``) is replaced by the
same function without it, as in ../shared/spec/original-performance.md.

Usage (about 10 minutes on the 2-core box)::

    .venv/bin/python experiments/bench_stylegan2.py [--runs 5] [--upstream /path/to/Clip2Protect]

Writes experiments/results/bench_stylegan2_raw.json and .md (the table); the analysis and the
numbers quoted in the README are in experiments/results/bench_stylegan2.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"  # Debian package libjemalloc2
RESULTS = ROOT / "experiments" / "results"

SCHED = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
JAX_CONFIGS = [
    {"impl": "jax", "modconv": "activation", "what": "forward", "remat": False},
    {"impl": "jax", "modconv": "activation", "what": "forward", "remat": True},
    {"impl": "jax", "modconv": "activation", "what": "grad_latent_noise", "remat": False},
    {"impl": "jax", "modconv": "activation", "what": "grad_latent_noise", "remat": True},
    {"impl": "jax", "modconv": "weight", "what": "forward", "remat": False},
    {"impl": "jax", "modconv": "weight", "what": "forward", "remat": True},
    {"impl": "jax", "modconv": "weight", "what": "grad_latent_noise", "remat": False},
    {"impl": "jax", "modconv": "weight", "what": "grad_latent_noise", "remat": True},
    {"impl": "jax", "modconv": "activation", "what": "grad_params", "remat": False},
    # XLA's default CPU scheduler optimises for concurrency and ignores remat's memory saving
    {"impl": "jax", "modconv": "activation", "what": "grad_latent_noise", "remat": False, "xla_flags": SCHED},
    {"impl": "jax", "modconv": "activation", "what": "grad_latent_noise", "remat": True, "xla_flags": SCHED},
]
TORCH_CONFIGS = [
    {"impl": "torch", "what": "forward_nograd"},
    {"impl": "torch", "what": "forward"},
    {"impl": "torch", "what": "grad_latent_noise"},
]


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _timed(fn, runs: int) -> dict:
    """Warm-up once, then ``runs`` timed calls: wall and process CPU seconds, minor faults."""
    fn()
    walls, cpus, faults, loads = [], [], [], []
    for _ in range(runs):
        loads.append(os.getloadavg()[0])
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0.ru_minflt)
    order = sorted(range(runs), key=lambda i: walls[i])
    mid = order[runs // 2]
    return {
        "wall_s": walls, "cpu_s": cpus, "wall_median_s": walls[mid], "cpu_at_median_s": cpus[mid],
        "cpu_median_s": sorted(cpus)[runs // 2], "cpu_per_wall": [c / w for c, w in zip(cpus, walls)],
        "minor_faults": faults, "load1_before": loads,
    }


def _random_generator(size: int, modconv: str):
    import numpy as np

    from jaxprotect.models.stylegan2 import StyleGAN2Config, buffer_shapes, load_stylegan2, param_shapes

    cfg = StyleGAN2Config(size)
    rng = np.random.default_rng(0)
    sd = {}
    for k, shape in param_shapes(cfg).items():
        if k.endswith("modulation.bias"):
            sd[k] = 1 + 0.1 * rng.standard_normal(shape)
        elif k.endswith("bias") or len(shape) <= 1:
            sd[k] = 0.1 * rng.standard_normal(shape)
        else:
            sd[k] = rng.standard_normal(shape)
    for k, shape in buffer_shapes(cfg)[1].items():
        sd[k] = rng.standard_normal(shape)
    return load_stylegan2({k: v.astype(np.float32) for k, v in sd.items()}, modconv=modconv), rng


def worker_jax(cfg: dict, runs: int, size: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    g, rng = _random_generator(size, cfg["modconv"])
    wplus = jnp.asarray(rng.standard_normal((1, g.n_latent, 512)).astype(np.float32))
    remat = cfg["remat"]
    if cfg["what"] == "forward":
        fn = jax.jit(lambda p, w, n: g.synthesis_apply(p, w, n, remat=remat))
    elif cfg["what"] == "grad_latent_noise":
        loss = lambda p, w, n: jnp.mean(g.synthesis_apply(p, w, n, remat=remat) ** 2)  # noqa: E731
        fn = jax.jit(jax.value_and_grad(loss, argnums=(1, 2)))
    else:
        loss = lambda p, w, n: jnp.mean(g.synthesis_apply(p, w, n, remat=remat) ** 2)  # noqa: E731
        fn = jax.jit(jax.value_and_grad(loss, argnums=0))
    args = (g.params, wplus, g.noise)
    rss_setup = _status_kib("VmRSS")
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    mem = {}
    try:
        ma = compiled.memory_analysis()
        for name in ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes",
                     "alias_size_in_bytes", "generated_code_size_in_bytes"):
            mem[name] = int(getattr(ma, name))
    except Exception as e:  # memory_analysis is best-effort on CPU
        mem["error"] = repr(e)
    out = _timed(lambda: jax.block_until_ready(compiled(*args)), runs)
    out.update({
        "compile_s": compile_s, "xla_memory_analysis": mem, "rss_after_setup_kib": rss_setup,
        "peak_rss_kib": _status_kib("VmHWM"), "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "jax": jax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
    })
    return out


def worker_torch(cfg: dict, runs: int, size: int, upstream: str) -> dict:
    import math

    import torch
    import torch.nn.functional as F

    sys.path.insert(0, upstream)
    import models.stylegan2.model as upstream_model  # noqa: E402  (the original generator)
    import models.stylegan2.op.fused_act as fused_act  # noqa: E402

    def fused_leaky_relu(input, bias, negative_slope=0.2, scale=2 ** 0.5):  # upstream minus `input.cuda()`
        rest_dim = [1] * (input.ndim - bias.ndim - 1)
        if input.ndim == 3:
            return F.leaky_relu(input + bias.view(1, *rest_dim, bias.shape[0]), negative_slope=negative_slope) * scale
        return F.leaky_relu(input + bias.view(1, bias.shape[0], *rest_dim), negative_slope=negative_slope) * scale

    fused_act.fused_leaky_relu = fused_leaky_relu
    upstream_model.fused_leaky_relu = fused_leaky_relu
    torch.manual_seed(0)
    g = upstream_model.Generator(size, 512, 8, channel_multiplier=2).eval()
    for p in g.parameters():
        p.requires_grad_(False)
    n_latent = int(math.log2(size)) * 2 - 2
    wplus = torch.randn(1, n_latent, 512)
    noise = [getattr(g.noises, f"noise_{i}").clone() for i in range(g.num_layers)]

    if cfg["what"] == "forward_nograd":
        def fn():
            with torch.no_grad():
                g([wplus], input_is_latent=True, noise=noise)
    elif cfg["what"] == "forward":
        def fn():
            g([wplus], input_is_latent=True, noise=noise)
    else:
        def fn():
            w = wplus.clone().requires_grad_(True)
            nz = [n.clone().requires_grad_(True) for n in noise]
            img, _ = g([w], input_is_latent=True, noise=nz)
            (img ** 2).mean().backward()
    rss_setup = _status_kib("VmRSS")
    out = _timed(fn, runs)
    out.update({"rss_after_setup_kib": rss_setup, "peak_rss_kib": _status_kib("VmHWM"),
                "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "torch": torch.__version__, "torch_threads": torch.get_num_threads()})
    return out


def _run_subprocess(cfg: dict, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(cfg), "--runs", str(args.runs), "--size", str(args.size)]
    if args.upstream:
        cmd += ["--upstream", args.upstream]
    env = dict(os.environ)
    if cfg.get("xla_flags"):
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + cfg["xla_flags"]).strip()
    if args.allocator == "jemalloc":
        env["LD_PRELOAD"] = JEMALLOC
        env["MALLOC_CONF"] = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        return {**cfg, "error": proc.stderr[-2000:]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["subprocess_s"] = time.perf_counter() - t0
    return {**cfg, **result}


def _label(r: dict) -> str:
    """Row label, e.g. 'JAX activation, grad_latent_noise, remat'."""
    if r["impl"] == "torch":
        return f"PyTorch original, {r['what']}"
    flags = f", XLA_FLAGS={r['xla_flags']}" if r.get("xla_flags") else ""
    return f"JAX {r['modconv']}, {r['what']}{', remat' if r['remat'] else ''}{flags}"


def _markdown(results: list[dict], meta: dict) -> str:
    lines = [
        "# StyleGAN2-1024 generator on CPU: JAX port vs the original",
        "",
        f"Machine: {meta['machine']}; {meta['cpus']} CPUs; {meta['when']}; allocator {meta['allocator']}. Batch 1, W+ 1x18x512, 17 noise maps, "
        f"random weights at real size (config-f, channel_multiplier 2). Each row is a fresh process: warm-up, then "
        f"{meta['runs']} timed runs; wall = median, CPU = process CPU seconds of that run (2 = both cores busy); "
        "load1 = 1-minute load average before the runs (other jobs share the 2 cores: compare rows taken at "
        "similar load). Peak RSS = VmHWM of the whole process (includes the ~0.1 GiB of weights and the "
        "runtime). `grad_latent_noise` = value and gradient of mean(image^2) w.r.t. W+ and all 17 noise maps; "
        "`grad_params` = w.r.t. all generator weights (one fine-tuning step without the optimiser).",
        "",
        "| configuration | wall median (s) | min / max | CPU (s) | cpu/wall | load1 | compile (s) | peak RSS (GiB) | XLA temp (GiB) | minor faults/run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {_label(r)} | error: see JSON | | | | | | | | |")
            continue
        temp = r.get("xla_memory_analysis", {}).get("temp_size_in_bytes")
        lines.append(
            f"| {_label(r)} | {r['wall_median_s']:.3f} | {min(r['wall_s']):.3f} / {max(r['wall_s']):.3f} | "
            f"{r['cpu_at_median_s']:.3f} | {r['cpu_at_median_s'] / r['wall_median_s']:.2f} | "
            f"{sorted(r['load1_before'])[len(r['load1_before']) // 2]:.1f} | "
            f"{r.get('compile_s', float('nan')):.1f} | {r['peak_rss_kib'] / 2**20:.2f} | "
            f"{'' if temp is None else f'{temp / 2**30:.2f}'} | {sorted(r['minor_faults'])[len(r['minor_faults']) // 2]} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--upstream", help="Clip2Protect checkout: also time the original PyTorch generator")
    ap.add_argument("--allocator", choices=("glibc", "jemalloc"), default="glibc",
                    help="jemalloc = LD_PRELOAD libjemalloc2 with decay off, as the PyTorch baseline in the spec")
    ap.add_argument("--only", default="", help="'|'-separated label prefixes (as in the table): run those only")
    ap.add_argument("--out", default=str(RESULTS / "bench_stylegan2_raw"), help="output path without suffix (the analysis lives in bench_stylegan2.md)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        cfg = json.loads(args.worker)
        sys.path.insert(0, str(ROOT))
        if cfg["impl"] == "jax":
            res = worker_jax(cfg, args.runs, args.size)
        else:
            res = worker_torch(cfg, args.runs, args.size, args.upstream)
        print(json.dumps(res))
        return 0

    configs = list(JAX_CONFIGS) + (list(TORCH_CONFIGS) if args.upstream else [])
    if args.only:  # e.g. --only "JAX activation, forward,PyTorch" (labels as in the table, prefix match)
        keys = [k.strip() for k in args.only.split("|")]
        configs = [c for c in configs if any(_label(c) == k or _label(c).startswith(k) for k in keys)]
    meta = {
        "machine": f"{platform.processor() or platform.machine()} ({cpu_model()})", "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M"), "runs": args.runs, "size": args.size, "allocator": args.allocator, "python": sys.version.split()[0],
    }
    results = []
    for cfg in configs:
        r = _run_subprocess(cfg, args)
        results.append(r)
        print(_label(r), "->", "error" if "error" in r else f"wall {r['wall_median_s']:.3f} s, cpu {r['cpu_at_median_s']:.3f} s, "
              f"peak {r['peak_rss_kib'] / 2**20:.2f} GiB", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    out.with_suffix(".md").write_text(_markdown(results, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
