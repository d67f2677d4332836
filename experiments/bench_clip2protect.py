"""Benchmark CLIP2Protect at full size (1024 px) on this machine: one search step, one fine-tuning
step, peak memory, and the time per photo of the whole pipeline.

    .venv/bin/python experiments/bench_clip2protect.py [--quick] [--batches 1,4] [--runs 3] [--allocator jemalloc]

Every network has its real architecture and size, with weights drawn by the golden-vector rule
(``tests/weight_rule.py``; StyleGAN2 1024 config-f, e4e, CLIP ViT-B/32, IR152, IRSE50, FaceNet,
MobileFace; LPIPS-VGG with a rule-drawn trunk and the shipped v0.1 heads), converted through the
real loaders once and cached under ``$TMPDIR/jaxprotect_bench_c2p`` (``jaxprotect convert``
format). Each configuration runs in a fresh subprocess so its peak RSS (VmHWM) is its own:
compile (first call), one warm-up call, then ``--runs`` timed calls; wall time (median, min,
max) and process CPU time are recorded, with the 1-minute load average before and after.

Per-photo pipeline time is EXTRAPOLATED, not measured end to end: (one-off costs measured here
+ 150 x fine-tune step + 49 x search step + 1 evaluation forward) / batch, with the one-off costs
(network loading from caches, CLIP text features, e4e inversion, MTCNN, compilation) taken from
the same runs. As in the CLI, e4e runs first and is dropped before the other networks load, so
the fine-tune and search runs do not hold its 1 GB of weights. Steps are compiled as the
pipeline compiles them (``sharding.compiled``: freed heap handed back to the OS around each
compilation). ``--allocator jemalloc`` preloads jemalloc in the children (faster on CPU: XLA's
large per-step buffers are reused instead of page-faulted in again; higher peak RSS).
Results: ``experiments/results/bench_clip2protect{,_jemalloc}.{md,json}``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
RESULTS = ROOT / "experiments" / "results"
CACHE = Path(os.environ.get("JAXPROTECT_BENCH_CACHE", Path(tempfile.gettempdir()) / "jaxprotect_bench_c2p"))
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"  # Debian package libjemalloc2
KINDS = ("stylegan2", "e4e", "lpips_vgg", "clip", "ir152", "irse50", "facenet", "mobileface")


# ------------------------------------------------------------------------------------------------
# child side


def _vmhwm_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def _vmrss_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def _rule_state_dict(kind: str) -> dict:
    sys.path.insert(0, str(TESTS))
    from helpers.golden import load_golden
    from helpers.weight_rule import rule_weights

    if kind == "stylegan2":
        from helpers.c2p_small import stylegan2_rule_state_dict

        return stylegan2_rule_state_dict(1024, 2, seed=1024)
    if kind == "clip":
        from helpers.clip_helpers import golden_state_dict

        return golden_state_dict("clip_vitb32.npz")
    golden = {"e4e": "e4e_1024.npz", "lpips_vgg": "lpips_vgg.npz", "ir152": "ir152.npz", "irse50": "irse50.npz",
              "facenet": "facenet.npz", "mobileface": "mobileface.npz"}[kind]
    return rule_weights(load_golden(golden))


def cached_checkpoints() -> dict:
    """{kind: .npz} converted rule-weight checkpoints (made once through the real loaders)."""
    from jaxprotect.checkpoints.state_dict import flatten, save_flat
    from jaxprotect.registry import load_network

    CACHE.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind in KINDS:
        path = CACHE / f"{kind}.npz"
        if not path.exists():
            net = load_network(kind, _rule_state_dict(kind))
            flat = net.to_flat() if hasattr(net, "to_flat") else flatten(net.params)
            save_flat(str(path), flat)
        paths[kind] = str(path)
    return paths


def _photos(n: int, size: int = 1024):
    import numpy as np
    from PIL import Image

    src = ROOT.parent / "shared" / "assets" / "faces" / "ffhq_sample" / "input_img.jpg"
    if src.exists():
        img = np.asarray(Image.open(src).convert("RGB").resize((size, size)))
    else:
        img = (np.random.default_rng(0).uniform(0, 255, (size, size, 3))).astype(np.uint8)
    return np.stack([np.roll(img, 7 * i, axis=1) for i in range(n)])


def _xla_memory(compiled) -> dict:
    """XLA's buffer assignment of one compiled step, GiB: temporaries, arguments, outputs."""
    m = compiled.memory_analysis()
    if m is None:
        return {}
    return {"temp": m.temp_size_in_bytes / 2**30, "arguments": m.argument_size_in_bytes / 2**30,
            "outputs": m.output_size_in_bytes / 2**30, "aliased": m.alias_size_in_bytes / 2**30}


def _timed(fn, runs: int):
    """(first-call wall, first-call cpu, [wall], [cpu]) of ``fn()`` (which blocks on its result)."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    first = (time.perf_counter() - t, time.process_time() - c)
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return first, walls, cpus


def child(kind: str, batch: int, runs: int, options: dict) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxprotect.methods.clip2protect import pipeline as P
    from jaxprotect.methods.clip2protect.config import (
        Clip2ProtectConfig,
        ExecutionConfig,
        FinetuneConfig,
        SearchConfig,
    )
    from jaxprotect.methods.clip2protect.finetune import broadcast_params, init_finetune
    from jaxprotect.methods.clip2protect.networks import load_networks
    from jaxprotect.methods.clip2protect.search import SearchInputs, init_state
    from jaxprotect.runtime import batch_mesh, compiled as compile_step, put_batched, put_replicated

    out = {"kind": kind, "batch": batch, "options": options, "load_before": os.getloadavg()[0]}
    cfg = Clip2ProtectConfig(FinetuneConfig(**options.get("finetune", {})), SearchConfig(**options.get("search", {})),
                             ExecutionConfig(**options.get("execution", {})))
    t = time.perf_counter()
    paths = cached_checkpoints()
    out["make_cache_s"] = time.perf_counter() - t
    t, c = time.perf_counter(), time.process_time()
    nets = load_networks(paths, cfg, with_e4e=(kind == "oneoff"))
    jax.block_until_ready(nets.text)
    out["load_networks_s"] = (time.perf_counter() - t, time.process_time() - c)
    out["vmhwm_after_load_gib"] = _vmhwm_gib()
    out["vmrss_after_load_gib"] = _vmrss_gib()
    mesh = batch_mesh()
    photos = _photos(batch)
    keys = jnp.stack([jax.random.fold_in(jax.random.key(0), i) for i in range(batch)])
    noise = P.draw_photo_noise(keys, nets.synthesis)

    if kind == "oneoff":
        from jaxprotect.methods.clip2protect.inversion import invert
        from jaxprotect.registry import load_network

        t, c = time.perf_counter(), time.process_time()
        mtcnn = load_network("mtcnn")
        det = [mtcnn.detect(p) for p in photos]
        out["mtcnn_s"] = (time.perf_counter() - t, time.process_time() - c, len(det[0].boxes))
        for label in ("e4e_first", "e4e_again"):
            t, c = time.perf_counter(), time.process_time()
            jax.block_until_ready(invert(nets.e4e, photos))
            out[label + "_s"] = (time.perf_counter() - t, time.process_time() - c)
        out["vmhwm_gib"] = _vmhwm_gib()
        return out

    w0 = jnp.asarray(np.random.default_rng(0).standard_normal((batch, nets.synthesis.n_latent, 512)), jnp.float32)
    per_photo = kind == "finetune" or cfg.finetune.runs
    # per-photo generator weights in "loop" mode (the CPU default): every photo runs the batch-1
    # program in turn, exactly as pipeline.protect_batch does
    loop = per_photo and P.batching_mode(cfg.execution, mesh) == "loop"
    groups = [slice(i, i + 1) for i in range(batch)] if loop else [slice(0, batch)]
    out["mode"] = "loop" if loop else ("vmap" if per_photo else "shared weights, batched")
    holder = {"i": 0}
    if kind == "finetune":
        real = P._real_images(photos, cfg.finetune)
        fn = P._finetune_fn(nets.synthesis, nets.lpips_apply, cfg.finetune, cfg.execution, mesh)
        lp = put_replicated(nets.lpips_params, mesh)
        jobs = []
        for sl in groups:
            n = sl.stop - sl.start
            jobs.append([put_batched(init_finetune(broadcast_params(nets.g_params, n), cfg.finetune), mesh),
                         put_batched((w0[sl], [x[sl] for x in noise], real[sl]), mesh)])
        t, c = time.perf_counter(), time.process_time()
        compiled = compile_step(fn, jobs[0][0], *jobs[0][1], lp)  # as the pipeline: compile, then malloc_trim
        out["compile_s"] = (time.perf_counter() - t, time.process_time() - c)
        out["xla_memory_gib"] = _xla_memory(compiled)
        out["vmhwm_after_compile_gib"] = _vmhwm_gib()

        def call():
            for job in jobs:
                job[0], loss = compiled(job[0], *job[1], lp)
            jax.block_until_ready(loss)
    else:
        src_fn, step_fn, eval_fn = P._search_fns(nets.search_models, cfg.search, cfg.execution, per_photo, mesh)
        persp = put_batched(P.draw_perspectives(keys, cfg.search, nets.synthesis.size)[0], mesh)
        shared = put_replicated(nets.shared(), mesh)
        boxes = np.array([[244.0, 187.0, 764.0, 891.0]] * batch, np.float32)
        rows, cols = P.fr_matrices(boxes, 0, 1024, 1024, [112, 160])
        temb = {n: np.asarray(np.random.default_rng(1).standard_normal((batch, 512)), np.float32)
                for n in nets.recognisers}
        aug = jnp.stack([jax.random.fold_in(k, 1) for k in keys])
        jobs = []
        t, c = time.perf_counter(), time.process_time()
        for sl in groups:
            n = sl.stop - sl.start
            g_in = put_batched(broadcast_params(nets.g_params, n), mesh) if per_photo else \
                put_replicated(nets.g_params, mesh)
            w0p, noisep = put_batched((w0[sl], [x[sl] for x in noise]), mesh)
            source01, feat = compile_step(src_fn, g_in, w0p, noisep, shared["clip"])(g_in, w0p, noisep, shared["clip"])
            jax.block_until_ready(feat)
            sub = put_batched((rows, cols, temb, {}, temb[cfg.search.victim], aug), mesh)
            sub = jax.tree.map(lambda x: x[sl], sub)
            inputs = SearchInputs(w0p, tuple(noisep), feat, *sub)
            jobs.append([put_batched(init_state(inputs, nets.synthesis, cfg.search), mesh), inputs, g_in, persp[sl]])
            del source01
        out["source_first_s"] = (time.perf_counter() - t, time.process_time() - c)
        out["vmhwm_after_source_gib"] = _vmhwm_gib()
        t, c = time.perf_counter(), time.process_time()
        compiled = compile_step(step_fn, jobs[0][0], jobs[0][1], jobs[0][2], shared, jnp.int32(0), jobs[0][3])
        out["compile_s"] = (time.perf_counter() - t, time.process_time() - c)
        out["xla_memory_gib"] = _xla_memory(compiled)
        out["vmhwm_after_compile_gib"] = _vmhwm_gib()

        def call():
            for job in jobs:
                job[0], aux = compiled(job[0], job[1], job[2], shared, jnp.int32(holder["i"]), job[3])
            holder["i"] += 1
            jax.block_until_ready(aux["loss"])

        def evaluate():
            for job in jobs:
                args = (job[0], job[1], job[2], shared, jnp.int32(holder["i"]), job[3])
                img, _ = compile_step(eval_fn, *args)(*args)
            jax.block_until_ready(img)

    first, walls, cpus = _timed(call, runs)
    out.update(first_call_s=first, wall_s=walls, cpu_s=cpus)
    out["vmhwm_after_steps_gib"] = _vmhwm_gib()
    out["vmrss_after_steps_gib"] = _vmrss_gib()
    if kind == "search":
        first_e, walls_e, cpus_e = _timed(evaluate, 1)
        out.update(eval_first_s=first_e, eval_wall_s=walls_e, eval_cpu_s=cpus_e)
    out["vmhwm_gib"] = _vmhwm_gib()
    out["load_after"] = os.getloadavg()[0]
    return out


# ------------------------------------------------------------------------------------------------
# parent side


ALLOC_NOTE = {"glibc": " (the default)",
              "jemalloc": f" (LD_PRELOAD={JEMALLOC} MALLOC_CONF=oversize_threshold:0)"}


def _child_env(allocator: str) -> dict:
    env = dict(os.environ)
    if allocator == "jemalloc":
        if not os.path.exists(JEMALLOC):
            raise SystemExit(f"--allocator jemalloc needs {JEMALLOC} (apt install libjemalloc2)")
        env["LD_PRELOAD"] = JEMALLOC
        env["MALLOC_CONF"] = "oversize_threshold:0"  # large buffers reused between steps (README)
    return env


def _run_child(kind, batch, runs, options, allocator="glibc") -> dict:
    cmd = [sys.executable, __file__, "--child", kind, str(batch), "--runs", str(runs), "--options", json.dumps(options)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=_child_env(allocator))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"kind": kind, "batch": batch, "options": options, "error": proc.stderr[-3000:]}
    res = json.loads(lines[-1][len("RESULT "):])
    res["subprocess_wall_s"] = time.perf_counter() - t
    print(f"  {kind} B={batch} {options}: median {statistics.median(res.get('wall_s', [0])):.2f} s wall, "
          f"peak {res['vmhwm_gib']:.2f} GiB", flush=True)
    return res


def _med(x):
    return statistics.median(x) if x else float("nan")


def summarise(results: list, args) -> tuple[str, dict]:
    by = {(r["kind"], r["batch"], json.dumps(r["options"], sort_keys=True)): r for r in results}
    ft_steps, steps = 150, 50

    def get(kind, b, opts):
        return by.get((kind, b, json.dumps(opts, sort_keys=True)))

    lines = ["# CLIP2Protect benchmark (JAX, CPU, 1024 px)", ""]
    lines += [f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}), no GPU or TPU lent to this task "
              f"(jax backend: cpu). Date: {time.strftime('%Y-%m-%d %H:%M')}. Allocator: {args.allocator}{ALLOC_NOTE[args.allocator]}. Networks at real size with rule/random "
              "weights (see the script's docstring). Loads are the 1-minute load average before/after each "
              "run: the machine is shared, and a load above ~2 means other processes took CPU from these "
              "runs, so wall times are upper bounds; CPU time (process_time, both threads summed) is the "
              "load-independent figure, and CPU/2 estimates the wall time on the 2 idle cores.", ""]
    lines += ["## Steps (median of the timed calls; first call includes compilation)", "",
              "| step | batch | options | median wall (min-max) s | per photo wall s | CPU s (median) | CPU/2 per photo s | first call wall / CPU s | peak RSS GiB | load before/after |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        if "error" in r or r["kind"] == "oneoff":
            continue
        w, c, b = r["wall_s"], r["cpu_s"], r["batch"]
        lines.append(
            f"| {r['kind']} | {b} | {json.dumps(r['options']) if r['options'] else 'defaults'} ({r.get('mode', '')}) | "
            f"{_med(w):.2f} ({min(w):.2f}-{max(w):.2f}) | {_med(w) / b:.2f} | {_med(c):.2f} | {_med(c) / 2 / b:.2f} | "
            f"{r['first_call_s'][0]:.0f} / {r['first_call_s'][1]:.0f} | {r['vmhwm_gib']:.2f} | "
            f"{r['load_before']:.1f} / {r['load_after']:.1f} |"
        )
    errors = [r for r in results if "error" in r]
    for r in errors:
        lines.append(f"\nERROR in {r['kind']} B={r['batch']} {r['options']}:\n```\n{r['error'][-1500:]}\n```")

    one = next((r for r in results if r["kind"] == "oneoff" and "error" not in r), None)
    summary = {"results": results}
    lines += ["", "## Per photo, whole pipeline (extrapolated)", ""]
    if one is not None:
        lines.append(f"One-off costs measured (wall / CPU s): loading the 8 networks from converted caches + CLIP "
                     f"text features {one['load_networks_s'][0]:.1f} / {one['load_networks_s'][1]:.1f}; MTCNN on "
                     f"{one['batch']} photo(s) {one['mtcnn_s'][0]:.1f} / {one['mtcnn_s'][1]:.1f}; e4e inversion "
                     f"(first call, with compile) {one['e4e_first_s'][0]:.1f} / {one['e4e_first_s'][1]:.1f}, again "
                     f"{one['e4e_again_s'][0]:.1f} / {one['e4e_again_s'][1]:.1f}.")
        lines.append("")
    lines += ["| batch | fine-tune B | search B | one-off CPU s (load+text+mtcnn+e4e+compiles) | steps CPU s (150 ft + 49 search + eval) | per photo CPU s | per photo wall s (CPU/2) | per photo wall s (measured medians) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    per_photo = {}
    for b in args.batches:
        ft = get("finetune", b, {})
        se = get("search", b, {})
        if not ft or not se or "error" in ft or "error" in se or one is None:
            continue
        oneoff_cpu = one["load_networks_s"][1] + one["mtcnn_s"][1] * b / one["batch"] + \
            one["e4e_first_s"][1] * b / one["batch"] + (ft["first_call_s"][1] - _med(ft["cpu_s"])) + \
            (se["first_call_s"][1] - _med(se["cpu_s"])) + se["source_first_s"][1] + se["eval_first_s"][1]
        oneoff_wall = one["load_networks_s"][0] + one["mtcnn_s"][0] * b / one["batch"] + \
            one["e4e_first_s"][0] * b / one["batch"] + (ft["first_call_s"][0] - _med(ft["wall_s"])) + \
            (se["first_call_s"][0] - _med(se["wall_s"])) + se["source_first_s"][0] + se["eval_first_s"][0]
        steps_cpu = ft_steps * _med(ft["cpu_s"]) + (steps - 1) * _med(se["cpu_s"]) + _med(se["eval_cpu_s"])
        steps_wall = ft_steps * _med(ft["wall_s"]) + (steps - 1) * _med(se["wall_s"]) + _med(se["eval_wall_s"])
        pp_cpu = (oneoff_cpu + steps_cpu) / b
        per_photo[b] = {"cpu": pp_cpu, "wall_est": pp_cpu / 2, "wall_measured": (oneoff_wall + steps_wall) / b}
        lines.append(f"| {b} | {ft['batch']} | {se['batch']} | {oneoff_cpu:.0f} | {steps_cpu:.0f} | {pp_cpu:.0f} | "
                     f"{pp_cpu / 2:.0f} ({pp_cpu / 120:.1f} min) | {(oneoff_wall + steps_wall) / b:.0f} |")
    summary["per_photo"] = per_photo
    lines += ["", "Original (PyTorch on CPU, `../shared/spec/original-performance.md`, measured on a 2-vCPU Intel Xeon "
              "AVX-512 box with jemalloc, not this AMD one): search step 14.8 s, fine-tune step 7.2 s (5.9 s quiet), "
              "peak 11.0-12.0 GiB, ~27 min per photo (batch 1 only)."]
    return "\n".join(lines) + "\n", summary


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=2, metavar=("KIND", "BATCH"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--options", default="{}")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--extra", action="append", default=[], help="KIND:B:JSON extra configuration to time")
    ap.add_argument("--quick", action="store_true", help="1 timed call per configuration")
    ap.add_argument("--allocator", choices=("glibc", "jemalloc"), default="glibc",
                    help="jemalloc: preload it (faster steps on CPU, higher peak; see the README)")
    ap.add_argument("--add-extra", action="store_true",
                    help="only run the --extra configurations and add them to the recorded results (replacing equal ones)")
    ap.add_argument("--no-skip-finetune-row", action="store_true", help="leave out the shared-weights search row")
    args = ap.parse_args(argv)
    if args.child:
        kind, batch = args.child[0], int(args.child[1])
        res = child(kind, batch, args.runs, json.loads(args.options))
        print("RESULT " + json.dumps(res))
        return 0
    args.batches = [int(b) for b in args.batches.split(",")]
    runs = 1 if args.quick else args.runs
    print(f"caches in {CACHE}; load {os.getloadavg()}", flush=True)
    alloc = args.allocator
    stem = "bench_clip2protect" + ("" if alloc == "glibc" else f"_{alloc}")
    if args.add_extra:
        results = json.loads((RESULTS / f"{stem}.json").read_text())["results"]
        for spec in args.extra:
            kind, b, opts = spec.split(":", 2)
            same = lambda r: (r["kind"], r["batch"], r["options"]) == (kind, int(b), json.loads(opts))  # noqa: E731
            results = [r for r in results if not same(r)] + [_run_child(kind, int(b), runs, json.loads(opts), alloc)]
        args.extra = []
    else:
        results = [_run_child("oneoff", 1, 1, {}, alloc)]
    for b in args.batches if not args.add_extra else ():
        for kind in ("search", "finetune"):
            results.append(_run_child(kind, b, runs, {}, alloc))
    if not args.no_skip_finetune_row and not args.add_extra:
        results.append(_run_child("search", max(args.batches), runs, {"finetune": {"skip": True}}, alloc))
    for spec in args.extra:
        kind, b, opts = spec.split(":", 2)
        results.append(_run_child(kind, int(b), runs, json.loads(opts), alloc))
    text, summary = summarise(results, args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary["allocator"] = alloc
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps(summary, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
