"""What saving a CLIP2Protect batch's state costs at 1024 px, and how often a job can afford it.

    .venv/bin/python experiments/bench_checkpoint.py [--repeats 5] [--pairs 3] [--block 5]

Networks at real size with rule weights (the caches of ``bench_clip2protect.py``:
StyleGAN2 1024 config-f, LPIPS-VGG, CLIP ViT-B/32, IR152, IRSE50, FaceNet, MobileFace), batch of
one photo on one CPU device (the CPU default, "loop" batching). Each stage runs in a fresh
subprocess (its own peak memory): compile, two warm-up steps, then

1. the step time (median of 3 steps; wall and process CPU);
2. each kind of save a job makes (:class:`jaxprotect.jobs.checkpoints.BatchCheckpoint`, orbax
   ``CheckpointManager``, asynchronous), ``--repeats`` times after one warm-up: the snapshot
   (device to host copy of the batch's rows), the ``save`` call (what blocks the loop), the
   background write until it is on disk, the size on disk, and the restore; search state
   (latents, noise maps < 512 px, Adam moments, loss curves, e4e codes), fine-tuning state
   (generator weights + Adam moments) and the tuned generator alone (stage boundary);
3. the overhead in the loop, measured directly: ``--pairs`` pairs of blocks of ``--block`` steps,
   one plain, one with a save after its first step (its write overlaps the following steps and
   is waited for at the block's end); overhead per save = median(with) - median(plain).

From these, per photo (150 fine-tuning + 49 search steps, the steps alone: one-off costs left
out, so the percentages are upper bounds), the overhead of saving every N steps for several N;
the job's defaults (``jaxprotect.jobs.DEFAULT_CHECKPOINT_EVERY``) are checked against the 3%
target. Wall times depend on the machine's load (recorded: 1-minute load average before and
after each child); process CPU time (both cores and orbax's writer threads summed) does not.
Results: ``experiments/results/bench_checkpoint.{md,json}``.
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
RESULTS = ROOT / "experiments" / "results"
FT_STEPS, SEARCH_STEPS = 150, 50
CANDIDATES = {"fine-tune": (5, 10, 25, 50, 150), "search": (1, 5, 10, 25, 49)}


def _clock():
    return time.perf_counter(), time.process_time()


def _since(t):
    return time.perf_counter() - t[0], time.process_time() - t[1]


def _du(folder) -> int:
    from jaxprotect.jobs.checkpoints import folder_bytes

    return folder_bytes(folder)


# ------------------------------------------------------------------------------------------------
# child side


def _setup(kind: str):
    """(step(), snapshot() -> {name: arrays}) of one photo's ``kind`` stage at 1024 px."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, str(ROOT / "experiments"))
    from bench_clip2protect import cached_checkpoints

    from jaxprotect.methods.clip2protect import pipeline as P
    from jaxprotect.methods.clip2protect.config import Clip2ProtectConfig
    from jaxprotect.methods.clip2protect.finetune import broadcast_params, init_finetune
    from jaxprotect.methods.clip2protect.networks import load_networks
    from jaxprotect.methods.clip2protect.search import SearchInputs, init_state
    from jaxprotect.runtime import batch_mesh, compiled, put_batched, put_replicated

    cfg = Clip2ProtectConfig()
    nets = load_networks(cached_checkpoints(), cfg, with_e4e=False)
    mesh = batch_mesh(jax.devices()[:1])
    keys = jnp.stack([jax.random.key(0)])
    noise = P.draw_photo_noise(keys, nets.synthesis)
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((1, nets.synthesis.n_latent, 512)).astype(np.float32)
    holder = {}
    if kind == "fine-tune":
        photos = rng.integers(0, 256, (1, 1024, 1024, 3), dtype=np.uint8)
        real = P._real_images(photos, cfg.finetune)
        fn = P._finetune_fn(nets.synthesis, nets.lpips_apply, cfg.finetune, cfg.execution, mesh)
        lp = put_replicated(nets.lpips_params, mesh)
        holder["state"] = put_batched(init_finetune(broadcast_params(nets.g_params, 1), cfg.finetune), mesh)
        x = put_batched((jnp.asarray(w0), noise, real), mesh)
        exe = compiled(fn, holder["state"], *x, lp)

        def step():
            holder["state"], loss = exe(holder["state"], *x, lp)
            jax.block_until_ready(loss)

        def snapshot():
            s = holder["state"]
            return {"params": jax.tree.leaves(P._host_rows(s.params, 1)),
                    "opt_state": jax.tree.leaves(P._host_rows(s.opt_state, 1)),
                    "losses": np.zeros((1, FT_STEPS), np.float32), "w0": w0}

        return step, snapshot, nets
    src_fn, step_fn, _ = P._search_fns(nets.search_models, cfg.search, cfg.execution, True, mesh)
    persp = put_batched(P.draw_perspectives(keys, cfg.search, 1024)[0], mesh)
    shared = put_replicated(nets.shared(), mesh)
    g_in = put_batched(broadcast_params(nets.g_params, 1), mesh)
    w0p, noisep = put_batched((jnp.asarray(w0), noise), mesh)
    _, feat = compiled(src_fn, g_in, w0p, noisep, shared["clip"])(g_in, w0p, noisep, shared["clip"])
    rows, cols = P.fr_matrices(np.array([[244.0, 187.0, 764.0, 891.0]], np.float32), 0, 1024, 1024, [112, 160])
    temb = {n: rng.standard_normal((1, 512)).astype(np.float32) for n in nets.recognisers}
    sub = put_batched((rows, cols, temb, {}, temb[cfg.search.victim], jnp.stack([jax.random.key(1)])), mesh)
    inputs = SearchInputs(w0p, tuple(noisep), feat, *sub)
    holder["state"] = put_batched(init_state(inputs, nets.synthesis, cfg.search), mesh)
    holder["i"] = 0
    exe = compiled(step_fn, holder["state"], inputs, g_in, shared, jnp.int32(0), persp)

    def step():
        holder["state"], aux = exe(holder["state"], inputs, g_in, shared, jnp.int32(holder["i"]), persp)
        holder["i"] += 1
        jax.block_until_ready(aux["loss"])

    def snapshot():
        curves = {k: np.zeros((1, SEARCH_STEPS - 1), np.float32) for k in ("loss", "l2", "adv", "clip")}
        curves["sim"] = {n: np.zeros((1, SEARCH_STEPS - 1), np.float32) for n in cfg.search.surrogates}
        return {"state": jax.tree.leaves(P._host_rows(holder["state"], 1)), "curves": curves, "w0": w0}

    return step, snapshot, nets


def child(kind: str, repeats: int, pairs: int, block: int) -> dict:
    import numpy as np

    from jaxprotect.jobs.checkpoints import BatchCheckpoint

    out = {"kind": kind, "load_before": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M")}
    t = _clock()
    step, snapshot, nets = _setup(kind)
    out["setup_s"] = _since(t)
    t = _clock()
    step()
    out["first_step_s"] = _since(t)
    step()
    walls, cpus = [], []
    for _ in range(3):
        t = _clock()
        step()
        w, c = _since(t)
        walls.append(w)
        cpus.append(c)
    out["step_s"] = {"wall": walls, "cpu": cpus}

    folder = Path(tempfile.mkdtemp(prefix="jp_bench_ckpt_", dir=os.environ.get("BENCH_CKPT_DIR")))
    saves = {"fine-tune": [("fine-tune state (generator + Adam)", "mid"), ("tuned generator (stage end)", "end")],
             "search": [("search state", "mid")]}[kind]
    out["saves"] = {}
    for label, what in saves:
        ckpt = BatchCheckpoint(folder / what, ["photo"])
        rec = {k: [] for k in ("snapshot", "save_call", "write", "total", "total_cpu", "restore", "restore_cpu",
                               "bytes")}
        for r in range(repeats + 1):
            t0 = _clock()
            arrays = snapshot()
            if what == "end":
                arrays = {"params": arrays["params"], "losses": arrays["losses"], "w0": arrays["w0"]}
            snap = _since(t0)[0]
            t = time.perf_counter()
            ckpt.save(kind, 1000 + r, arrays, {"photos": ["photo"]})
            call = time.perf_counter() - t
            t = time.perf_counter()
            ckpt.wait()
            write = time.perf_counter() - t
            total = _since(t0)
            step_dir = ckpt.folder / kind / str(1000 + r)
            size = _du(step_dir)
            t = _clock()
            back, _ = ckpt.restore(kind, 1000 + r)
            restore = _since(t)
            leaves = [np.asarray(x) for x in __import__("jax").tree.leaves(back)]
            assert sum(x.nbytes for x in leaves) == sum(np.asarray(x).nbytes for x in __import__("jax").tree.leaves(arrays))
            if r == 0:
                continue  # warm-up
            for k, v in (("snapshot", snap), ("save_call", call), ("write", write), ("total", total[0]),
                         ("total_cpu", total[1]), ("restore", restore[0]), ("restore_cpu", restore[1]),
                         ("bytes", size)):
                rec[k].append(v)
        rec["array_bytes"] = int(sum(np.asarray(x).nbytes for x in __import__("jax").tree.leaves(arrays)))
        out["saves"][label] = rec
        ckpt.remove()

    # Direct: blocks of ``block`` steps, plain or with one save (after the first step).
    ckpt = BatchCheckpoint(folder / "loop", ["photo"])
    blocks = {"plain": [], "with_save": []}
    for p in range(pairs):
        for mode in ("plain", "with_save") if p % 2 == 0 else ("with_save", "plain"):
            t = _clock()
            for i in range(block):
                step()
                if mode == "with_save" and i == 0:
                    ckpt.save(kind, 2000 + p, snapshot(), {"photos": ["photo"]})
            ckpt.wait()
            blocks[mode].append(_since(t))
    ckpt.remove()
    out["blocks"] = {k: {"wall": [v[0] for v in vs], "cpu": [v[1] for v in vs]} for k, vs in blocks.items()}
    out["block_steps"] = block
    out["load_after"] = os.getloadavg()[0]
    return out


# ------------------------------------------------------------------------------------------------
# parent side


def _run_child(kind, args) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--repeats", str(args.repeats), "--pairs", str(args.pairs),
           "--block", str(args.block)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{kind} child failed:\n{proc.stderr[-4000:]}")
    res = json.loads(lines[-1][len("RESULT "):])
    res["subprocess_wall_s"] = time.perf_counter() - t
    print(f"  {kind}: step {statistics.median(res['step_s']['wall']):.2f} s wall", flush=True)
    return res


def _med(x):
    return statistics.median(x)


def summarise(results: dict, args) -> tuple[str, dict]:
    from jaxprotect.jobs import DEFAULT_CHECKPOINT_EVERY

    ft, se = results["fine-tune"], results["search"]
    t_ft = {k: _med(ft["step_s"][k]) for k in ("wall", "cpu")}
    t_se = {k: _med(se["step_s"][k]) for k in ("wall", "cpu")}
    per_photo = {k: FT_STEPS * t_ft[k] + (SEARCH_STEPS - 1) * t_se[k] for k in ("wall", "cpu")}

    def save(res, label):
        return res["saves"][label]

    mid_ft, end_ft, mid_se = (save(ft, "fine-tune state (generator + Adam)"), save(ft, "tuned generator (stage end)"),
                              save(se, "search state"))

    def per_save(res):
        b = res["blocks"]
        return {k: _med(b["with_save"][k]) - _med(b["plain"][k]) for k in ("wall", "cpu")}

    direct = {"fine-tune": per_save(ft), "search": per_save(se)}
    isolated = {"fine-tune": {"wall": _med(mid_ft["total"]), "cpu": _med(mid_ft["total_cpu"])},
                "search": {"wall": _med(mid_se["total"]), "cpu": _med(mid_se["total_cpu"])}}
    boundary = {"wall": _med(end_ft["total"]), "cpu": _med(end_ft["total_cpu"])}

    def overhead(n_ft, n_se, basis, k):
        n_mid_ft = (FT_STEPS // n_ft - (1 if FT_STEPS % n_ft == 0 else 0)) if n_ft else 0  # step 150: the boundary save
        n_mid_se = (SEARCH_STEPS - 1) // n_se if n_se else 0
        cost = n_mid_ft * max(basis["fine-tune"][k], 0) + boundary[k] + n_mid_se * max(basis["search"][k], 0)
        return cost / per_photo[k] * 100, cost

    lines = ["# Checkpoint cost of a CLIP2Protect job at 1024 px (CPU)", ""]
    lines += [f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}), no GPU or TPU lent to this task; date "
              f"{ft.get('date', time.strftime('%Y-%m-%d %H:%M'))}; disk: the machine's virtual disk (`/dev/vda`, an ext2/3/4 "
              "file system per `stat -f`, under /tmp; "
              "tensorstore's writes go through the page cache, so 'on disk' means handed to the kernel). Networks "
              "at real size with rule weights, one photo per batch on one CPU device (the CPU default). Load "
              f"(1-min average) before/after: fine-tune child {ft['load_before']:.1f}/{ft['load_after']:.1f}, search "
              f"child {se['load_before']:.1f}/{se['load_after']:.1f}: the machine is shared by several agents (2 "
              "cores), so wall times are upper bounds; process CPU time (all threads, orbax's writers included) is "
              "the load-independent figure. Medians of "
              f"{args.repeats} saves after one warm-up; steps: median of 3 after 2 warm-ups.", ""]
    lines += ["## Steps", "", "| stage | median wall s | median CPU s | first step wall s (compiled before) |", "| --- | --- | --- | --- |",
              f"| fine-tune | {t_ft['wall']:.2f} | {t_ft['cpu']:.2f} | {ft['first_step_s'][0]:.0f} |",
              f"| search | {t_se['wall']:.2f} | {t_se['cpu']:.2f} | {se['first_step_s'][0]:.0f} |", "",
              f"Per photo, steps only (150 fine-tune + 49 search): {per_photo['wall']:.0f} s wall, "
              f"{per_photo['cpu']:.0f} s CPU.", ""]
    lines += ["## One save (orbax CheckpointManager, async) and one restore", "",
              "| what | arrays MB | on disk MB | snapshot s | save call s (blocks the loop) | background write s | "
              "total wall s | total CPU s | restore wall s | restore CPU s |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, rec in (("search state", mid_se), ("fine-tune state (generator + Adam)", mid_ft),
                       ("tuned generator (stage end)", end_ft)):
        lines.append(f"| {label} | {rec['array_bytes'] / 1e6:.1f} | {_med(rec['bytes']) / 1e6:.1f} | "
                     f"{_med(rec['snapshot']):.3f} | {_med(rec['save_call']):.3f} | {_med(rec['write']):.3f} | "
                     f"{_med(rec['total']):.3f} | {_med(rec['total_cpu']):.3f} | {_med(rec['restore']):.3f} | "
                     f"{_med(rec['restore_cpu']):.3f} |")
    lines += ["", f"## In the loop: blocks of {ft['block_steps']} steps with and without one save "
              f"(median of {args.pairs} each)", "",
              "| stage | plain block wall (min-max) / CPU s | with one save wall (min-max) / CPU s | "
              "overhead per save wall / CPU s |", "| --- | --- | --- | --- |"]
    for stage, res in (("fine-tune", ft), ("search", se)):
        b = res["blocks"]
        pw, sw = b["plain"]["wall"], b["with_save"]["wall"]
        lines.append(f"| {stage} | {_med(pw):.2f} ({min(pw):.1f}-{max(pw):.1f}) / {_med(b['plain']['cpu']):.2f} | "
                     f"{_med(sw):.2f} ({min(sw):.1f}-{max(sw):.1f}) / {_med(b['with_save']['cpu']):.2f} | "
                     f"{direct[stage]['wall']:+.2f} / {direct[stage]['cpu']:+.2f} |")
    spread = max(max(r["blocks"][m]["wall"]) - min(r["blocks"][m]["wall"]) for r in (ft, se)
                 for m in ("plain", "with_save"))
    wall_resolved = all(0 < direct[k]["wall"] for k in direct) and spread < min(direct[k]["wall"] for k in direct)
    lines += ["", "## Overhead per photo of saving every N steps", "",
              "Cost per photo = (fine-tune saves x cost) + the stage-end save + (search saves x cost), over the "
              "per-photo step time above (wall over wall, CPU over CPU). 'isolated, wall' counts the whole save "
              "(snapshot + save call + background write) as if it stopped the loop: the pessimistic wall figure, "
              "since the write in fact overlaps the next steps; 'isolated, CPU' the CPU time of the same; 'in "
              "loop, CPU' the CPU difference of the blocks (the most conservative figure measured)."
              + ("" if wall_resolved else " The blocks' wall differences are not resolved under this load "
                 f"({direct['fine-tune']['wall']:+.1f} s fine-tune, {direct['search']['wall']:+.1f} s search per "
                 f"save, while blocks of the same kind differ by up to {spread:.1f} s from one another), so no "
                 "'in loop, wall' column is given."), "",
              "| fine-tune N | search N | isolated, wall % | isolated, CPU % | in loop, CPU % |",
              "| --- | --- | --- | --- | --- |"]
    table = {}
    for n_ft in CANDIDATES["fine-tune"]:
        for n_se in CANDIDATES["search"]:
            row = {"isolated_wall_pct": overhead(n_ft, n_se, isolated, "wall")[0],
                   "isolated_cpu_pct": overhead(n_ft, n_se, isolated, "cpu")[0],
                   "loop_cpu_pct": overhead(n_ft, n_se, direct, "cpu")[0]}
            if wall_resolved:
                row["loop_wall_pct"] = overhead(n_ft, n_se, direct, "wall")[0]
            table[f"{n_ft},{n_se}"] = row
            if n_se in (1, 10, 49) or n_ft == 25:
                lines.append(f"| {n_ft} | {n_se} | {row['isolated_wall_pct']:.2f} | {row['isolated_cpu_pct']:.2f} | "
                             f"{row['loop_cpu_pct']:.2f} |")
    d_ft, d_se = DEFAULT_CHECKPOINT_EVERY["fine-tune"], DEFAULT_CHECKPOINT_EVERY["search"]
    chosen = table[f"{d_ft},{d_se}"]
    worst = max(chosen.values())

    def span(n_ft, n_se):
        row = table[f"{n_ft},{n_se}"]
        return f"{min(row.values()):.1f}-{max(row.values()):.1f}%"

    disk = (_med(mid_ft["bytes"]) * 2 + _med(end_ft["bytes"]) + _med(mid_se["bytes"]) * 2) / 1e6
    lines += ["", f"**Job defaults: fine-tune every {d_ft} steps, search every {d_se}**: overhead "
              f"{chosen['isolated_wall_pct']:.2f}% (isolated, wall), {chosen['isolated_cpu_pct']:.2f}% (isolated, "
              f"CPU), {chosen['loop_cpu_pct']:.2f}% (in loop, CPU) of the per-photo step time: "
              f"{'under' if worst < 3 else 'OVER'} the 3% target. Why these N: the fine-tuning state is "
              f"{mid_ft['array_bytes'] / mid_se['array_bytes']:.0f}x larger than the search state, so it sets the pace: "
              f"every 5 steps would cost {span(5, d_se)}, every 10 {span(10, d_se)}, every 25 {span(25, d_se)} by the "
              "three measures; 25 keeps a margin under 3% on a busier disk and loses at most 25 steps; the search "
              f"state is so small that every 10 steps costs almost nothing ({span(d_ft, 1)} with a save after every "
              "search step). A job stopped without warning loses at most "
              f"{d_ft} fine-tune steps ({d_ft * t_ft['wall']:.0f} s here) or {d_se} search steps "
              f"({d_se * t_se['wall']:.0f} s); a stop request saves at once. Disk per photo in progress: at most "
              f"~{disk:.0f} MB while a save replaces the previous one (orbax keeps the last step of each stage), "
              "times the batch size; removed when the photo is written.", ""]
    summary = {"results": results, "per_photo_steps_s": per_photo, "direct_per_save": direct,
               "isolated_per_save": isolated, "boundary": boundary, "table": table,
               "defaults": {"fine-tune": d_ft, "search": d_se, "overhead": chosen}}
    return "\n".join(lines), summary


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--from-json", action="store_true", help="summarise the recorded results again (no new runs)")
    args = ap.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.repeats, args.pairs, args.block)))
        return 0
    if args.from_json:
        results = json.loads((RESULTS / "bench_checkpoint.json").read_text())["results"]
    else:
        print(f"load {os.getloadavg()}", flush=True)
        results = {kind: _run_child(kind, args) for kind in ("search", "fine-tune")}
    text, summary = summarise(results, args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_checkpoint.md").write_text(text)
    (RESULTS / "bench_checkpoint.json").write_text(json.dumps(summary, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
