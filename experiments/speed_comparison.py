"""Side-by-side speed of the ORIGINAL PyTorch code and jaxprotect, stage by stage, in one run.

    .venv/bin/python experiments/speed_comparison.py \\
        --clip2protect /path/to/Clip2Protect --tipim /path/to/TIP-IM --pythonpath /path/to/pydeps \\
        [--stages all] [--runs 5] [--rounds 2] [--allocator jemalloc] [--quick] [--device cpu|cuda]

Stages: ``stylegan2_forward`` and ``stylegan2_forward_backward`` (1024 px, W+ and all noise maps),
``search_step`` (one CLIP2Protect adversarial iteration), ``finetune_step`` (one generator fine-tuning
iteration), ``tipim_step`` (one TIP-IM iteration, IR-SE-50, 10 targets), ``mtcnn`` (detection on the
1024 x 1024 FFHQ sample photo). Every stage runs each side in its own fresh process (so peak memory,
VmHWM, is that side's own), with the same golden-rule weights and the same seeded inputs: set-up, a
first call (compilation for jax), one warm-up call, then ``--runs`` timed calls (wall and process CPU
seconds). ``--rounds 2`` runs every pair twice, the second time in the opposite order, and pools the
timed calls. The 1-minute load average is recorded around every process.

Where the upstream code comes from (never copied into this repository):

- ``--clip2protect``: a checkout of github.com/fahadshamshad/Clip2Protect (commit 2585966 was used);
- ``--tipim``: a checkout of github.com/ShawnXYang/TIP-IM (commit 5ad8175);
- facenet-pytorch (MTCNN, the original of CLIP2Protect's face box) and the PyPI packages the upstream
  code imports that this environment lacks: ``pip download --no-deps facenet-pytorch==2.6.0 lpips==0.1.4
  torchvision`` and unpack the wheels into one folder passed with ``--pythonpath`` (or use
  ``--upstream-python`` to run the original side in another environment).

A stage whose checkout is not given runs the jaxprotect side only and says so. The patches the
original side needs (CPU instead of ``.cuda()``, offline stand-ins for downloads, the torchvision
import work-around) are applied at run time by ``speed_original.py`` and listed in the results.

``--allocator jemalloc`` (default) preloads jemalloc (Debian ``libjemalloc2``) in BOTH sides with the
same setting, ``dirty_decay_ms:-1,muzzy_decay_ms:-1`` (freed pages are kept for reuse; the spec's
baseline for PyTorch; for jaxprotect it measured as fast or faster than ``oversize_threshold:0`` with a
lower peak on the CLIP2Protect steps, ``experiments/results/speed_env_ab.md``); ``glibc`` uses the
default allocator.

``--device cuda`` measures the same on a GPU at ``--batches`` (default 1,8,32 there): both sides on
the device, JAX with ``JAX_PLATFORMS=cuda`` and preallocation off, a time budget (``--budget-s``,
default 540) after which the remaining rows are skipped; results are written after every row.
``--device cpu`` with ``--batches`` runs the same code path on the CPU (the test uses it at ``--quick``
sizes). ``--quick`` uses tiny sizes (StyleGAN2 at 32 px, the tests' small networks) to check the
harness in seconds. Results: ``experiments/results/speed_comparison{,_<device>}{.md,.json,.png}``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from machine import cpu_model  # noqa: E402
from speed_common import RESULT_PREFIX  # noqa: E402

RESULTS = ROOT / "experiments" / "results"
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"  # Debian package libjemalloc2
MALLOC_CONF = {"original": "dirty_decay_ms:-1,muzzy_decay_ms:-1", "jaxprotect": "dirty_decay_ms:-1,muzzy_decay_ms:-1"}
STAGES = ("stylegan2_forward", "stylegan2_forward_backward", "search_step", "finetune_step", "tipim_step", "mtcnn")
LABELS = {
    "stylegan2_forward": "StyleGAN2 forward",
    "stylegan2_forward_backward": "StyleGAN2 forward + backward (W+, noise)",
    "search_step": "CLIP2Protect search step",
    "finetune_step": "CLIP2Protect fine-tuning step",
    "tipim_step": "TIP-IM step",
    "mtcnn": "MTCNN on a photo",
}
NEEDS = {"stylegan2_forward": "clip2protect", "stylegan2_forward_backward": "clip2protect",
         "search_step": "clip2protect", "finetune_step": "clip2protect", "tipim_step": "tipim", "mtcnn": "pythonpath"}
BATCHED = {"stylegan2_forward", "stylegan2_forward_backward", "search_step", "finetune_step", "tipim_step"}
# the original code handles one photo at a time in these stages (per-image loops; TIP-IM's greedy
# selection only works with --batch_size 1): at batch B its time per photo is its batch-1 time
ORIGINAL_BATCH_ONE = {"search_step", "finetune_step", "tipim_step", "mtcnn"}
FULL = {"quick": False, "g_size": 1024, "g_cm": 2, "loss_size": 256, "tipim_targets": 10, "mtcnn_size": None}
QUICK = {"quick": True, "g_size": 32, "g_cm": 1, "loss_size": 16, "tipim_targets": 3, "mtcnn_size": 256}
PIPELINE_STEPS = {"finetune_step": 150, "search_step": 50}  # Clip2Protect main.py defaults
TARGETS = {"finetune_step": 2.5, "search_step": 5.0, "stylegan2_forward_backward": 3.5, "pipeline": 3.0}


# ------------------------------------------------------------------------------------------------
# worker (one stage, one side, in a fresh process)


def worker(stage: str, side: str, opts: dict) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    from speed_common import emit

    if side == "original":
        import speed_original as impl
    else:
        import jax
        import speed_jaxprotect as impl
        from jaxprotect.runtime import configure_cpu_dispatch

        configure_cpu_dispatch()  # as the jaxprotect command does

        want = "cpu" if opts["device"] == "cpu" else "gpu"
        if jax.default_backend() != want:
            raise SystemExit(f"jax runs on {jax.default_backend()}, not {want}")
    emit(impl.run(stage, opts))


# ------------------------------------------------------------------------------------------------
# driver


def _git_commit(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def _env(side: str, args, extra: dict | None = None) -> dict:
    """The worker's environment: this one, the allocator for ``side``, then ``extra`` (which wins)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if args.allocator == "jemalloc":
        if not os.path.exists(JEMALLOC):
            raise SystemExit(f"--allocator jemalloc needs {JEMALLOC} (apt-get install -y libjemalloc2)")
        env["LD_PRELOAD"] = JEMALLOC
        env["MALLOC_CONF"] = MALLOC_CONF[side]
    if side == "original" and args.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*args.pythonpath, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if side == "jaxprotect":
        env["JAX_PLATFORMS"] = "cpu" if args.device == "cpu" else "cuda"
        if args.device != "cpu":
            env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    env.update(extra or {})
    return env


def _allocator_note(side: str, args) -> str:
    return f"jemalloc ({MALLOC_CONF[side]})" if args.allocator == "jemalloc" else "glibc malloc"


def run_side(stage: str, side: str, batch: int, args, extra_env: dict | None = None) -> dict:
    """Run one worker process (``extra_env`` set last in its environment); returns its result, or a
    dict with ``error``/``skipped``."""
    opts = {"device": args.device, "batch": batch, "runs": args.runs, "warmup": 1,
            "sizes": QUICK if args.quick else FULL, "clip2protect": args.clip2protect, "tipim": args.tipim}
    python = args.upstream_python if side == "original" and args.upstream_python else sys.executable
    cmd = [python, str(HERE / "speed_comparison.py"), "--worker", stage, side, json.dumps(opts)]
    load = os.getloadavg()[0]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=_env(side, args, extra_env),
                              timeout=args.timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout_s} s", "load1_start": load}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-3000:], "load1_start": load}
    res = json.loads(lines[-1][len(RESULT_PREFIX):])
    res.update(process_s=time.perf_counter() - t, load1_start=load, allocator=_allocator_note(side, args))
    return res


def _pool(results: list[dict]) -> dict:
    """One record from the rounds of one side: timed calls pooled, worst peak memory, load range."""
    ok = [r for r in results if "error" not in r and "skipped" not in r]
    if not ok:
        return results[-1]
    walls = [w for r in ok for w in r["wall_s"]]
    cpus = [c for r in ok for c in r["cpu_s"]]
    out = dict(ok[-1])
    out.update(
        wall_s=walls, cpu_s=cpus, wall_median=statistics.median(walls), wall_min=min(walls), wall_max=max(walls),
        cpu_median=statistics.median(cpus), cpu_min=min(cpus), cpu_max=max(cpus),
        vmhwm_kib=max(r["vmhwm_kib"] for r in ok), rounds=len(ok),
        vmhwm_steps_kib=max((r.get("vmhwm_steps_kib") or -1) for r in ok),
        vmhwm_best_kib=min(r["vmhwm_kib"] for r in ok),
        load1=[min(r["load1_before"] for r in ok), max(r["load1_after"] for r in ok)],
        steal_pct=max((r.get("steal_pct") or 0.0) for r in ok),
        first_call=ok[0]["first_call"], first_calls=[r["first_call"] for r in ok],
    )
    if any("device_peak_bytes" in r for r in ok):
        out["device_peak_bytes"] = max(r.get("device_peak_bytes", -1) for r in ok)
    return out


def _plan(args) -> list[tuple[str, int]]:
    rows = []
    for stage in args.stages:
        for b in (args.batches if stage in BATCHED else [1]):
            rows.append((stage, b))
    return rows


def _skip_reason(stage: str, args) -> str | None:
    need = NEEDS[stage]
    if need == "pythonpath":
        if not args.pythonpath and not args.upstream_python:
            return "no facenet-pytorch given (--pythonpath with the unpacked facenet-pytorch 2.6.0 wheel)"
        return None
    if not getattr(args, need):
        return f"no --{need} checkout given"
    return None


def run_all(args) -> dict:
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()} ({cpu_model()})",
        "cpus": os.cpu_count(), "device": args.device, "quick": args.quick, "runs": args.runs, "rounds": args.rounds,
        "allocator": args.allocator, "python": sys.version.split()[0],
        "upstream": {"clip2protect": _git_commit(args.clip2protect), "tipim": _git_commit(args.tipim)},
        "pythonpath": args.pythonpath, "load_at_start": os.getloadavg(),
    }
    data = {"meta": meta, "rows": []}
    start = time.perf_counter()
    original_cache: dict = {}
    for stage, batch in _plan(args):
        row = {"stage": stage, "batch": batch}
        if time.perf_counter() - start > args.budget_s:
            row["skipped"] = f"time budget of {args.budget_s} s spent"
            data["rows"].append(row)
            continue
        skip = _skip_reason(stage, args)
        orig_batch = 1 if stage in ORIGINAL_BATCH_ONE else batch
        sides = {"original": [], "jaxprotect": []}
        for r in range(args.rounds):
            order = ("original", "jaxprotect") if r % 2 == 0 else ("jaxprotect", "original")
            for side in order:
                if side == "original":
                    if skip:
                        continue
                    key = (stage, orig_batch, r)
                    if key not in original_cache:
                        original_cache[key] = run_side(stage, side, orig_batch, args)
                    sides[side].append(original_cache[key])
                else:
                    sides[side].append(run_side(stage, side, batch, args))
                _progress(stage, batch, side, sides[side][-1])
        row["original"] = _pool(sides["original"]) if sides["original"] else {"skipped": skip}
        row["original"]["batch"] = orig_batch
        row["jaxprotect"] = _pool(sides["jaxprotect"])
        data["rows"].append(row)
        write(data, args)
    data["meta"]["load_at_end"] = os.getloadavg()
    data["meta"]["patches"] = sorted({p for row in data["rows"] for p in row.get("original", {}).get("patches", [])})
    write(data, args)
    return data


def stolen_share(rows) -> float | None:
    """Percent of CPU time the hypervisor stole during the timed calls of ``rows``: each side's worst round,
    weighted by its timed wall seconds (a stage of a few tenths of a second reads steal in 10 ms ticks); None
    when no record has it."""
    recs = [row[side] for row in rows for side in ("original", "jaxprotect")
            if row.get(side, {}).get("steal_pct") is not None]
    weight = sum(sum(r["wall_s"]) for r in recs)
    return sum(r["steal_pct"] * sum(r["wall_s"]) for r in recs) / weight if recs and weight > 0 else None


def _progress(stage, batch, side, res):
    if "error" in res:
        msg = "ERROR " + res["error"].strip().splitlines()[-1][:200]
    else:
        msg = (f"wall {res['wall_median']:.3f} s, cpu {res['cpu_median']:.3f} s, peak {res['vmhwm_kib'] / 2**20:.2f} GiB, "
               f"load {res['load1_before']:.1f}-{res['load1_after']:.1f}"
               + (f", steal {res['steal_pct']:.0f}%" if res.get("steal_pct") is not None else ""))
    print(f"{stage} B={batch} {side}: {msg}", flush=True)


# ------------------------------------------------------------------------------------------------
# report


def ratios(row: dict) -> dict:
    """original / jaxprotect per photo: wall, CPU, and jaxprotect's peak memory over the original's."""
    o, j = row.get("original", {}), row.get("jaxprotect", {})
    if "wall_median" not in o or "wall_median" not in j:
        return {}
    ob, jb = o.get("batch", 1), row["batch"]
    out = {"wall": (o["wall_median"] / ob) / (j["wall_median"] / jb), "cpu": (o["cpu_median"] / ob) / (j["cpu_median"] / jb),
           "memory": j["vmhwm_kib"] / o["vmhwm_kib"]}
    if "vmhwm_best_kib" in o and "vmhwm_best_kib" in j:
        out["memory_best"] = j["vmhwm_best_kib"] / o["vmhwm_best_kib"]
    if "device_peak_bytes" in o and "device_peak_bytes" in j and o["device_peak_bytes"] > 0:
        out["device_memory"] = j["device_peak_bytes"] / o["device_peak_bytes"]
    return out


def pipeline_estimate(rows: list[dict], batch: int = 1) -> dict | None:
    """Per photo, 150 fine-tuning + 50 search steps from the step medians (both sides), if both were timed."""
    by = {r["stage"]: r for r in rows if r["batch"] == batch}
    if not all(s in by and ratios(by[s]) for s in PIPELINE_STEPS):
        return None
    out = {}
    for side in ("original", "jaxprotect"):
        for what in ("wall", "cpu"):
            total = 0.0
            for stage, n in PIPELINE_STEPS.items():
                rec = by[stage][side]
                b = rec.get("batch", batch) if side == "original" else batch
                total += n * rec[f"{what}_median"] / b
            out[f"{side}_{what}_s"] = total
    out["ratio_wall"] = out["original_wall_s"] / out["jaxprotect_wall_s"]
    out["ratio_cpu"] = out["original_cpu_s"] / out["jaxprotect_cpu_s"]
    out["peak_memory_gib"] = {side: max(by[s][side]["vmhwm_kib"] for s in PIPELINE_STEPS) / 2**20
                              for side in ("original", "jaxprotect")}
    return out


def _cell(rec: dict, batch: int) -> tuple[str, str, str]:
    if "skipped" in rec:
        return "skipped", "", ""
    if "error" in rec:
        return "error (see JSON)", "", ""
    b = rec.get("batch", batch)
    per = "" if b == 1 else f" ({rec['wall_median'] / b:.3f} /photo)"
    wall = f"{rec['wall_median']:.3f}{per} ({rec['wall_min']:.3f}–{rec['wall_max']:.3f})"
    cpu = f"{rec['cpu_median']:.2f}"
    mem = f"{rec['vmhwm_kib'] / 2**20:.2f}"
    if "vmhwm_best_kib" in rec:
        mem += f" ({rec['vmhwm_best_kib'] / 2**20:.2f})"
    if "device_peak_bytes" in rec:
        mem += f" / {rec['device_peak_bytes'] / 2**30:.2f} dev"
    return wall, cpu, mem


def _load_end(m: dict) -> str:
    end = m.get("load_at_end")
    return f"{end[0]:.2f}" if end else "?"


def _best_round_memory(r: dict) -> str:
    return f" ({r['memory_best']:.2f})" if "memory_best" in r else ""


def markdown(data: dict) -> str:
    m = data["meta"]
    lines = [f"# Speed: the original PyTorch code vs jaxprotect ({'quick sizes' if m['quick'] else 'full size'}, "
             f"{m['device']})", "",
             f"Machine: {m['machine']}, {m['cpus']} CPUs; {m['when']}; Python {m['python']}. Each side of each stage "
             f"ran in its own fresh process: set-up, first call (compilation), 1 warm-up, {m['runs']} timed calls"
             f"{', pooled over ' + str(m['rounds']) + ' rounds run in alternating order' if m['rounds'] > 1 else ''}. "
             "Wall = median (min–max) seconds per call; CPU = median process CPU seconds per call (all threads); "
             "peak = VmHWM of that process in GiB, set-up and compilation included, the worst round (in brackets: "
             "the best round). jaxprotect's side runs XLA's CPU programs inline, as the jaxprotect command does "
             "(runtime.configure_cpu_dispatch; asynchronously, a step's peak sometimes held a second copy of XLA's "
             "scratch buffer, results/ab_cpu_dispatch.md). Ratios are original / jaxprotect per photo; memory = "
             "jaxprotect / original (worst rounds; best rounds in brackets). "
             f"Load average (1 min) at start {m['load_at_start'][0]:.2f}, at end {_load_end(m)}; per row below.", ""]
    loads = [v for row in data["rows"] for side in ("original", "jaxprotect") for v in row.get(side, {}).get("load1", [])]
    if loads and max(loads) > 2.5:
        lines += [f"**The machine was shared during this run (1-minute load up to {max(loads):.1f} on 2 cores).** Wall "
                  "times of both sides are inflated, and PyTorch's intra-op threads lose more to the contention than "
                  "XLA's (their CPU time grows too, as they wait for a descheduled peer), so these ratios favour "
                  "jaxprotect; rerun on an idle machine before quoting them as idle-machine figures.", ""]
    stolen = stolen_share(data["rows"])
    if stolen is not None:
        lines += [f"CPU time stolen by the hypervisor during the timed calls (other guests of the host, which the load "
                  f"average does not show): {stolen:.1f}% (each stage's worst round, weighted by its timed seconds)."
                  + (" **Above 10%: these timings are slowed by the host, not by this machine's load.**"
                     if stolen > 10 else ""), ""]
    lines += [
             f"Upstream: Clip2Protect {m['upstream']['clip2protect'] or 'not given'}, TIP-IM "
             f"{m['upstream']['tipim'] or 'not given'}.", "",
             "| stage | batch | original wall s | CPU s | peak GiB | jaxprotect wall s | CPU s | peak GiB | "
             "speed-up wall | speed-up CPU | memory jax/orig | load1 orig / jax | allocator orig / jax |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in data["rows"]:
        if "skipped" in row:
            lines.append(f"| {LABELS[row['stage']]} | {row['batch']} | {row['skipped']} | | | | | | | | | | |")
            continue
        o, j = row["original"], row["jaxprotect"]
        r = ratios(row)
        ow, oc, om = _cell(o, 1)
        jw, jc, jm = _cell(j, row["batch"])
        ob = " (orig at 1)" if o.get("batch", 1) != row["batch"] else ""

        def load(rec):
            return "–".join(f"{v:.1f}" for v in rec["load1"]) if "load1" in rec else ""
        lines.append(
            f"| {LABELS[row['stage']]} | {row['batch']}{ob} | {ow} | {oc} | {om} | {jw} | {jc} | {jm} | "
            f"{r.get('wall', float('nan')):.2f}x | {r.get('cpu', float('nan')):.2f}x | "
            f"{r.get('memory', float('nan')):.2f}{_best_round_memory(r)} | {load(o)} / {load(j)} | "
            f"{o.get('allocator', '')} / {j.get('allocator', '')} |")
    pipe = pipeline_estimate(data["rows"])
    if pipe:
        lines += ["", "Per photo, CLIP2Protect's 150 fine-tuning + 50 search steps, from the step medians above "
                  "(not timed end to end; one-off costs such as loading, text features, e4e and compilation excluded): "
                  f"original {pipe['original_wall_s'] / 60:.1f} min wall ({pipe['original_cpu_s'] / 60:.1f} CPU-min), "
                  f"jaxprotect {pipe['jaxprotect_wall_s'] / 60:.1f} min wall ({pipe['jaxprotect_cpu_s'] / 60:.1f} CPU-min, "
                  f"i.e. about {pipe['jaxprotect_cpu_s'] / 120:.1f} min on 2 idle cores if both stay busy): "
                  f"{pipe['ratio_wall']:.2f}x wall, {pipe['ratio_cpu']:.2f}x CPU; peak memory of the two stages "
                  f"{pipe['peak_memory_gib']['original']:.2f} GiB vs {pipe['peak_memory_gib']['jaxprotect']:.2f} GiB."]
    lines += ["", "## Targets (issue 17, same-run ratios on this CPU)", "", "| target | measured | met |",
              "| --- | --- | --- |"]
    by = {r["stage"]: r for r in data["rows"] if r["batch"] == 1}
    for stage, want in TARGETS.items():
        if stage == "pipeline":
            got = pipe["ratio_wall"] if pipe else None
            name = f"whole per-photo pipeline >= {want}x (<= 6 min per 1024 photo)"
            if pipe:
                got_text = (f"{got:.2f}x wall ({pipe['ratio_cpu']:.2f}x CPU); {pipe['jaxprotect_wall_s'] / 60:.1f} min "
                            f"wall at this load, {pipe['jaxprotect_cpu_s'] / 120:.1f} min as CPU/2")
                met = got >= want and pipe["jaxprotect_wall_s"] <= 360
            else:
                got_text, met = "not measured", None
        else:
            r = ratios(by[stage]) if stage in by else {}
            got = r.get("wall")
            name = f"{LABELS[stage]} >= {want}x"
            got_text = f"{got:.2f}x wall ({r['cpu']:.2f}x CPU)" if got else "not measured"
            met = got >= want if got else None
        lines.append(f"| {name} | {got_text} | {'yes' if met else ('no' if met is False else '–')} |")
    for key, what in (("memory", "worst round"), ("memory_best", "best round")):
        mem = {LABELS[r["stage"]]: ratios(r)[key] for r in data["rows"] if r["batch"] == 1 and key in ratios(r)}
        if mem:
            detail = ", ".join(f"{k} {v:.2f}" for k, v in mem.items())
            lines.append(f"| peak memory <= half of the original's ({what}, jax/orig) | {detail} | "
                         f"{'yes' if max(mem.values()) <= 0.5 else 'no'} |")
    lines += ["", "## What each side ran", ""]
    for row in data["rows"]:
        for side in ("original", "jaxprotect"):
            rec = row.get(side, {})
            if "what" in rec:
                extra = f", {rec['mode']}" if rec.get("mode") else ""
                lines.append(f"- {LABELS[row['stage']]}, {side}, batch {rec.get('batch', row['batch'])}: {rec['what']}{extra}; "
                             f"first call {rec['first_call'][0]:.1f} s.")
            elif "error" in rec:
                lines.append(f"- {LABELS[row['stage']]}, {side}: ERROR: `{rec['error'].strip().splitlines()[-1][:300]}`")
            elif "skipped" in rec:
                lines.append(f"- {LABELS[row['stage']]}, {side}: skipped: {rec['skipped']}")
    patches = data["meta"].get("patches", [])
    lines += ["", "## Patches applied to the original code at run time (nothing else was changed)", ""]
    lines += [f"- {p}" for p in patches] or ["- none (no original side ran)"]
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path) -> None:
    """Grouped bars: seconds per photo (log scale) of both sides for every stage at batch 1."""
    try:
        import matplotlib
    except ImportError:
        print("plot skipped: matplotlib is not installed (pip install jaxprotect[experiments])", file=sys.stderr)
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in data["rows"] if r["batch"] == 1 and "skipped" not in r]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.5))
    ys = list(range(len(rows)))
    for k, (side, colour) in enumerate((("original", "#b0b0b0"), ("jaxprotect", "#2a6fdb"))):
        vals = [r[side].get("wall_median", 0) if isinstance(r.get(side), dict) else 0 for r in rows]
        ax.barh([y + (0.2 if k == 0 else -0.2) for y in ys], vals, height=0.38, color=colour,
                label="original (PyTorch)" if side == "original" else "jaxprotect")
        for y, v in zip(ys, vals):
            if v:
                ax.text(v * 1.05, y + (0.2 if k == 0 else -0.2), f"{v:.2f} s", va="center", fontsize=7)
    names = []
    for r in rows:
        rt = ratios(r)
        names.append(LABELS[r["stage"]] + (f"\n{rt['wall']:.1f}x faster (wall)" if rt else ""))
    ax.set_yticks(ys, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("seconds per call, median (log scale)")
    m = data["meta"]
    loads = [v for r in rows for side in ("original", "jaxprotect") for v in r.get(side, {}).get("load1", [])]
    load = f"load {min(loads):.1f}-{max(loads):.1f}" if loads else ""
    ax.set_title(f"Original (PyTorch) vs jaxprotect, {m['device']}, {m['cpus']} CPUs, batch 1, {load}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def write(data: dict, args) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(data, indent=1, default=str)), (".md", markdown(data))):
        tmp = out.with_suffix(suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out.with_suffix(suffix))
    if not args.no_plot:
        plot(data, out.with_suffix(".png"))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip2protect", help="checkout of fahadshamshad/Clip2Protect (original side of 4 stages)")
    ap.add_argument("--tipim", help="checkout of ShawnXYang/TIP-IM (original side of the TIP-IM step)")
    ap.add_argument("--pythonpath", action="append", default=[],
                    help="folder added to the original side's PYTHONPATH (unpacked facenet-pytorch, lpips, torchvision)")
    ap.add_argument("--upstream-python", help="Python interpreter of the original side (default: this one)")
    ap.add_argument("--stages", default="all", help=f"comma-separated, from {', '.join(STAGES)}")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1, help="repeat every pair, alternating the order (pooled)")
    ap.add_argument("--allocator", choices=("jemalloc", "glibc"), default="jemalloc")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda for a GPU")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1; 1,8,32 with a GPU)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness in seconds")
    ap.add_argument("--budget-s", type=float, default=None, help="skip the remaining rows after this many seconds")
    ap.add_argument("--timeout-s", type=float, default=1800, help="per worker process")
    ap.add_argument("--out", default=None, help="output path without suffix")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--from-json", help="only re-render the report (.md, .png) of a results .json")
    ap.add_argument("--worker", nargs=3, metavar=("STAGE", "SIDE", "OPTS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return args
    args.stages = list(STAGES) if args.stages == "all" else [s.strip() for s in args.stages.split(",")]
    unknown = set(args.stages) - set(STAGES)
    if unknown:
        ap.error(f"unknown stages {sorted(unknown)}; choose from {', '.join(STAGES)}")
    gpu = args.device != "cpu"
    args.batches = [int(b) for b in (args.batches or ("1,8,32" if gpu else "1")).split(",")]
    args.budget_s = args.budget_s if args.budget_s is not None else (540 if gpu else float("inf"))
    if args.out is None:
        stem = "speed_comparison" + ("" if not gpu else f"_{args.device}") + ("_quick" if args.quick else "")
        args.out = str(RESULTS / stem)
    for p in (args.clip2protect, args.tipim):
        if p and not Path(p).is_dir():
            ap.error(f"{p} is not a folder")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        stage, side, opts = args.worker
        worker(stage, side, json.loads(opts))
        return 0
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
        args.out = str(Path(args.from_json).with_suffix(""))
        write(data, args)
        return 0
    print(f"load {os.getloadavg()}; writing {args.out}.md", flush=True)
    data = run_all(args)
    print(markdown(data))
    failed = [r for r in data["rows"] if any("error" in r.get(s, {}) for s in ("original", "jaxprotect"))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
