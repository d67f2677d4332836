"""Where the time of one CLIP2Protect generator fine-tuning step goes (1024 px, batch 1, this CPU).

    .venv/bin/python experiments/profile_finetune.py [--runs 3] [--parts all|step,...] [--trace DIR]

Networks at real size with rule weights (StyleGAN2-1024 config-f by the golden StyleGAN2 rule, LPIPS-VGG
with the rule-drawn trunk of ``lpips_vgg.npz`` and the shipped heads). Each part is jit-compiled
alone and timed (warm-up, then ``--runs`` calls; median wall and process CPU seconds):

- ``g_fwd``: synthesis forward at output stride 4 (what the loss reads);
- ``g_fwd_bwd_params``: value and gradient of sum(G(w)^2) w.r.t. all generator weights;
- ``lpips_fwd`` / ``lpips_fwd_bwd``: LPIPS-VGG(img, real) at 256, value / gradient w.r.t. img;
- ``loss_grad``: the step's loss and its gradient w.r.t. the generator weights (no Adam);
- ``adam``: the Adam update over the 30.4 M weights alone;
- ``step``: the whole step as the pipeline compiles it (``make_finetune_step``).

``--trace DIR`` also records a ``jax.profiler`` trace of ``--trace-part`` and prints the 25 most
expensive XLA ops (summed over the traced calls). Results: printed, and with ``--out`` a JSON.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after PYTHONPATH: the script can profile another checkout
sys.path.insert(0, str(ROOT / "tests"))


def build(size: int = 1024, modconv: str = "activation"):
    """(synthesis, g_params, lpips_apply, lpips_params, w [1, L, 512], noise, real [1, 256, 256, 3])."""
    import jax.numpy as jnp
    import numpy as np
    from helpers.c2p_small import stylegan2_rule_state_dict
    from helpers.golden import load_golden
    from helpers.weight_rule import rule_weights

    from jaxprotect.methods.clip2protect.generator import from_stylegan2
    from jaxprotect.models.lpips import load_lpips_vgg
    from jaxprotect.models.stylegan2 import load_stylegan2

    g = load_stylegan2(stylegan2_rule_state_dict(size, 2, seed=size), channel_multiplier=2, modconv=modconv)
    lp = load_lpips_vgg(rule_weights(load_golden("lpips_vgg.npz")))
    syn = from_stylegan2(g)
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.standard_normal((1, syn.n_latent, 512)), jnp.float32)
    noise = [jnp.asarray(rng.standard_normal((1,) + s), jnp.float32) for s in syn.noise_shapes]
    real = jnp.asarray(rng.uniform(-1, 1, (1, 256, 256, 3)), jnp.float32)
    return syn, g.params, lp.apply, lp.params, w, noise, real


def timed(fn, runs):
    """Medians of ``runs`` calls after the first call and one warm-up (speed_common.measure)."""
    from speed_common import measure

    m = measure(fn, runs)
    return {"wall_s": m["wall_median"], "cpu_s": m["cpu_median"], "walls": m["wall_s"], "cpus": m["cpu_s"],
            "load1": m["load1_after"]}


def parts(syn, gp, lpips_apply, lpp, w, noise, real, stride, cfg):
    import jax
    import jax.numpy as jnp
    import optax

    from jaxprotect.methods.clip2protect.finetune import broadcast_params, init_finetune, make_finetune_step

    img = syn.apply(gp, w, noise, False, stride)
    img = img if img.shape[1] == 256 else jax.image.resize(img, (1, 256, 256, 3), "nearest")

    def g_fwd(p):
        return syn.apply(p, w, noise, False, stride)

    def g_fwd_bwd(p):
        return jax.value_and_grad(lambda q: jnp.sum(syn.apply(q, w, noise, False, stride) ** 2))(p)

    def lp_fwd(x):
        return lpips_apply(lpp, x, real)

    def lp_fwd_bwd(x):
        return jax.value_and_grad(lambda y: jnp.sum(lpips_apply(lpp, y, real)))(x)

    step = make_finetune_step(syn, lpips_apply, cfg.finetune, cfg.execution)
    state = init_finetune(broadcast_params(gp, 1), cfg.finetune)

    def loss_grad(p):
        def f(q):
            x = syn.images(q, w, noise, per_photo_params=True, batching="vmap", output_stride=stride)
            return jnp.sum(lpips_apply(lpp, x, real)) + 0.1 * jnp.mean((x - real) ** 2)
        return jax.value_and_grad(f)(p)

    grads = jax.tree.map(jnp.ones_like, state.params)
    opt = optax.adam(5e-4)

    def adam(g, s, p):
        u, s2 = jax.vmap(opt.update)(g, s, p)
        return optax.apply_updates(p, u), s2

    table = {}
    from jaxprotect.methods.clip2protect import finetune as ft

    if hasattr(ft, "finetune_target"):  # this version can compute the photo's LPIPS features once
        from jaxprotect.models.lpips import LPIPSModule

        module = LPIPSModule("vgg")
        target = ft.finetune_target(real, lambda p, x: module.apply({"params": p}, x, None), lpp)
        table["step_precomputed_lpips"] = (jax.jit(step), (state, w, noise, target, lpp))
    return {
        **table,
        "g_fwd": (jax.jit(g_fwd), (gp,)),
        "g_fwd_bwd_params": (jax.jit(g_fwd_bwd), (gp,)),
        "lpips_fwd": (jax.jit(lp_fwd), (img,)),
        "lpips_fwd_bwd": (jax.jit(lp_fwd_bwd), (img,)),
        "loss_grad": (jax.jit(loss_grad), (state.params,)),
        "adam": (jax.jit(adam), (grads, state.opt_state, state.params)),
        "step": (jax.jit(step), (state, w, noise, real, lpp)),
    }


def top_ops(trace_dir: str, n: int = 25):
    """{op name: (total ms, count)} of the XLA ops in the newest trace under ``trace_dir``."""
    files = sorted(Path(trace_dir).rglob("*.trace.json.gz"), key=os.path.getmtime)
    if not files:
        return []
    data = json.load(gzip.open(files[-1]))
    total = defaultdict(float)
    count = defaultdict(int)
    for ev in data.get("traceEvents", []):
        if ev.get("ph") != "X":
            continue
        name = ev.get("name", "")
        args = ev.get("args", {})
        if "hlo_op" in args or "long_name" in args or name.startswith(("fusion", "convolution", "dot", "custom-call")):
            total[name] += ev.get("dur", 0) / 1e3
            count[name] += 1
    ranked = sorted(((k, round(v, 2), count[k]) for k, v in total.items()), key=lambda t: -t[1])
    return ranked if n is None else ranked[:n]


def kind_of(name: str, desc: str) -> str:
    """The kind of one traced XLA op from its name and :func:`describe_op` text."""
    base = re.sub(r"\.\d+$", "", name)
    if base != "ynn_fusion" and not base.startswith("dot"):  # dot: a product left to XLA's own library call
        if base.startswith(("copy", "transpose")) or "copy" in base:
            return "layout copies / transposes"
        if "pad" in base or "slice" in base:
            return "pads / slices"
        return "other fusions"
    if "convolution" in desc:
        return "convolutions (forward, input gradient)"
    m = re.search(r"f32\[(\d+),(\d+)\]\S* dot", desc) or re.search(r"dot f32\[(\d+),(\d+)\]", desc)
    if m and int(m.group(1)) * int(m.group(2)) <= 512 * 512 * 9:
        return "kernel-sized products (weight gradients)"
    return "other products" if " dot " in desc else "other library fusions"


def categories(hlo: str, ops) -> dict:
    """Summed ms of the traced ops by :func:`kind_of`."""
    out = defaultdict(float)
    for name, ms, _ in ops:
        out[kind_of(name, describe_op(hlo, name))] += ms
    return dict(out)


def describe_op(hlo: str, name: str) -> str:
    """The shape and the main (convolution/dot) instructions of op ``name`` in compiled HLO text."""
    m = re.search(r"^\s*(?:ROOT )?%" + re.escape(name) + r" = (\S+) (\w[\w-]*)\((.*)$", hlo, re.M)
    if not m:
        return "?"
    shape, kind, rest = m.groups()
    desc = f"{shape} {kind}"
    calls = re.search(r"calls=%([\w.-]+)", rest)
    if calls:
        body = re.search(r"^%" + re.escape(calls.group(1)) + r" .*?\{(.*?)^\}", hlo, re.M | re.S)
        if body:
            main_ops = re.findall(r"= (\S+) (convolution|dot|reduce|reduce-window|select-and-scatter)\(([^)]*)\)([^\n]*)",
                                  body.group(1))
            desc += " | " + "; ".join(f"{k} {sh} {extra.strip()[:90]}" for sh, k, _, extra in main_ops[:3])
    elif kind in ("convolution", "dot"):
        desc += " " + rest[:160]
    return desc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--parts", default="all")
    ap.add_argument("--trace", default=None)
    ap.add_argument("--trace-part", default="step")
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--out", default=None)
    ap.add_argument("--modconv", default="activation", choices=("activation", "weight"))
    args = ap.parse_args(argv)
    import jax

    from jaxprotect.methods.clip2protect.config import Clip2ProtectConfig, FinetuneConfig

    t = time.perf_counter()
    syn, gp, lpa, lpp, w, noise, real = build(modconv=args.modconv)
    print(f"built in {time.perf_counter() - t:.1f} s; load {os.getloadavg()}", flush=True)
    cfg = Clip2ProtectConfig(FinetuneConfig(strided=args.stride > 1))
    table = parts(syn, gp, lpa, lpp, w, noise, real, args.stride, cfg)
    chosen = list(table) if args.parts == "all" else args.parts.split(",")
    results = {"load_before": os.getloadavg()}
    for name in chosen:
        fn, a = table[name]
        t = time.perf_counter()
        exe = fn.lower(*a).compile()
        comp = time.perf_counter() - t
        r = timed(lambda: jax.block_until_ready(exe(*a)), args.runs)
        r["compile_s"] = comp
        results[name] = r
        print(f"{name:18s} wall {r['wall_s']:.3f} s  cpu {r['cpu_s']:.3f} s  (compile {comp:.1f} s, load {r['load1']:.2f})",
              flush=True)
    if args.trace:
        fn, a = table[args.trace_part]
        exe = fn.lower(*a).compile()
        jax.block_until_ready(exe(*a))
        with jax.profiler.trace(args.trace):
            for _ in range(2):
                jax.block_until_ready(exe(*a))
        ops = top_ops(args.trace)
        hlo = exe.as_text()
        results["categories_ms_per_call"] = {k: v / 2 for k, v in categories(hlo, top_ops(args.trace, None)).items()}
        print("by kind (ms per call):", json.dumps({k: round(v) for k, v in results["categories_ms_per_call"].items()}))
        results["top_ops"] = [(name, ms, c, describe_op(hlo, name)) for name, ms, c in ops]
        for name, ms, c, what in results["top_ops"]:
            print(f"  {ms / 2:9.1f} ms/call  x{c // 2:<3d} {name}: {what}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
