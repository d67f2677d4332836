"""jaxprotect's side of ``speed_comparison.py``: one stage, set up as the library runs it, timed.

Full size: the real architectures with the golden-rule weights the original side loads (StyleGAN2-1024
config-f drawn by the StyleGAN2 rule with seed 1024; LPIPS-VGG, CLIP ViT-B/32, IR152, IRSE50, FaceNet,
MobileFace through their converters, cached by ``bench_clip2protect.cached_checkpoints``). ``--quick``
sizes (``sizes["quick"]``): StyleGAN2 at 32 px with channel multiplier 1, and the small CLIP2Protect
networks and tiny recognisers of the tests (``tests/helpers/c2p_small.py``): the same code paths in seconds.
Steps are compiled as the pipeline compiles them (``pipeline._finetune_fn`` / ``_search_fns`` through
``runtime.compiled``); the first call (compilation) is reported apart from the timed calls.
"""
from __future__ import annotations

import numpy as np
from speed_common import FACE_BOX_1024, measure, photo, stylegan2_inputs, unit_images


def _generator(sizes: dict):
    from helpers.c2p_small import stylegan2_rule_state_dict

    from jaxprotect.models.stylegan2 import load_stylegan2

    size, cm = sizes["g_size"], sizes["g_cm"]
    return load_stylegan2(stylegan2_rule_state_dict(size, cm, seed=size), channel_multiplier=cm)


def _noise_nhwc(noise, batch: int = 1):
    import jax.numpy as jnp

    return [jnp.asarray(np.repeat(n[..., None], batch, 0) if batch > 1 else n[..., None]) for n in noise]


def stage_stylegan2(opts: dict, backward: bool):
    import jax
    import jax.numpy as jnp

    g = _generator(opts["sizes"])
    wplus, noise = stylegan2_inputs(opts["sizes"]["g_size"], opts["batch"])
    w = jnp.asarray(wplus)
    nz = _noise_nhwc(noise)
    if not backward:
        fn = jax.jit(lambda p, w, n: g.synthesis_apply(p, w, n))
    else:
        loss = lambda p, w, n: jnp.mean(g.synthesis_apply(p, w, n) ** 2)  # noqa: E731
        fn = jax.jit(jax.value_and_grad(loss, argnums=(1, 2)))
    from jaxprotect.runtime import compiled

    params = jax.jit(g.frozen_layout)(g.params)  # frozen weights laid out once, as the search does
    exe = compiled(fn, params, w, nz)  # as the pipeline compiles: the compiler's memory handed back
    return (lambda: jax.block_until_ready(exe(params, w, nz))), {
        "what": "synthesis forward" if not backward else "mean(G^2) value and gradient w.r.t. W+ and all noise maps",
        "xla_temp_gib": _temp_gib(exe)}


def _temp_gib(exe):
    try:
        return exe.memory_analysis().temp_size_in_bytes / 2**30
    except Exception:  # memory analysis is best effort
        return None


def _lpips(sizes: dict):
    """(lpips_apply, lpips_features, params) at full size or the tests' small LPIPS."""
    if sizes["quick"]:
        from helpers.c2p_small import small_networks

        from jaxprotect.models.lpips import LPIPSModule

        nets, _ = small_networks(size=sizes["g_size"])
        module = LPIPSModule("vgg")
        return nets.lpips_apply, (lambda p, x: module.apply({"params": p}, x, None)), nets.lpips_params
    from helpers.golden import load_golden
    from helpers.weight_rule import rule_weights

    from jaxprotect.models.lpips import load_lpips_vgg

    lp = load_lpips_vgg(rule_weights(load_golden("lpips_vgg.npz"))).laid_out()  # as build_networks passes it
    return lp.apply, lp.features, lp.params


def _config(sizes: dict, skip_finetune: bool = False):
    from jaxprotect.methods.clip2protect.config import Clip2ProtectConfig, FinetuneConfig

    return Clip2ProtectConfig(FinetuneConfig(size=sizes["loss_size"], skip=skip_finetune))


def stage_finetune(opts: dict):
    import jax

    from jaxprotect.methods.clip2protect import pipeline as P
    from jaxprotect.methods.clip2protect.finetune import broadcast_params, finetune_target, init_finetune
    from jaxprotect.methods.clip2protect.generator import from_stylegan2
    from jaxprotect.runtime import batch_mesh, compiled, put_batched, put_replicated

    sizes, b = opts["sizes"], opts["batch"]
    g = _generator(sizes)
    lpips_apply, lpips_features, lpips_params = _lpips(sizes)
    cfg = _config(sizes)
    syn = from_stylegan2(g)
    mesh = batch_mesh()
    wplus, noise = stylegan2_inputs(sizes["g_size"], b)
    photos = np.repeat(photo(sizes["g_size"])[None], b, 0)
    target = finetune_target(P._real_images(photos, cfg.finetune), lpips_features, lpips_params)
    fn = P._finetune_fn(syn, lpips_apply, cfg.finetune, cfg.execution, mesh)
    lp = put_replicated(lpips_params, mesh)
    loop = b > 1 and P.batching_mode(cfg.execution, mesh) == "loop"
    groups = [slice(i, i + 1) for i in range(b)] if loop else [slice(0, b)]
    jobs = []
    for sl in groups:
        n = sl.stop - sl.start
        state = put_batched(init_finetune(broadcast_params(g.params, n), cfg.finetune), mesh)
        args = put_batched((wplus[sl], _noise_nhwc(noise, n), jax.tree.map(lambda a: a[sl], target)), mesh)
        jobs.append([state, args])
    exe = compiled(fn, jobs[0][0], *jobs[0][1], lp)

    def call():
        for job in jobs:
            job[0], loss = exe(job[0], *job[1], lp)
        jax.block_until_ready(loss)
    return call, {"what": "one fine-tuning step (LPIPS-VGG + 0.1 MSE at the loss size, Adam on all G weights)",
                  "mode": "loop" if loop else "one program", "xla_temp_gib": _temp_gib(exe)}


def _search_networks(sizes: dict, g):
    """Networks of the search step (no LPIPS, no e4e)."""
    from jaxprotect.methods.clip2protect.config import FR_MODELS

    cfg = _config(sizes, skip_finetune=True)
    if sizes["quick"]:
        from helpers.c2p_small import small_networks

        nets, _ = small_networks(size=sizes["g_size"])
        return nets
    import bench_clip2protect

    from jaxprotect.methods.clip2protect.networks import build_networks
    from jaxprotect.registry import load_network

    paths = bench_clip2protect.cached_checkpoints()
    clip = load_network("clip", paths["clip"])
    recs = {n: load_network(n, paths[n]) for n in FR_MODELS}
    return build_networks(g, None, clip, recs, cfg)


def stage_search(opts: dict):
    import jax
    import jax.numpy as jnp

    from jaxprotect.methods.clip2protect import pipeline as P
    from jaxprotect.methods.clip2protect.finetune import broadcast_params
    from jaxprotect.methods.clip2protect.search import SearchInputs, init_state
    from jaxprotect.runtime import batch_mesh, compiled, put_batched, put_replicated, release_memory

    sizes, b = opts["sizes"], opts["batch"]
    g = None if sizes["quick"] else _generator(sizes)
    nets = _search_networks(sizes, g)
    release_memory()
    cfg = _config(sizes)
    size = nets.synthesis.size
    mesh = batch_mesh()
    wplus, noise_np = stylegan2_inputs(size, b)
    noise = _noise_nhwc(noise_np, b)
    keys = jnp.stack([jax.random.fold_in(jax.random.key(0), i) for i in range(b)])
    persp = P.draw_perspectives(keys, cfg.search, size)[0]
    # per-photo generator weights (each photo has its fine-tuned generator), as in the pipeline
    loop = P.batching_mode(cfg.execution, mesh) == "loop"
    groups = [slice(i, i + 1) for i in range(b)] if loop else [slice(0, b)]
    src_fn, step_fn, _ = P._search_fns(nets.search_models, cfg.search, cfg.execution, True, mesh)
    shared = put_replicated(nets.shared(), mesh)
    boxes = np.array([[v * size / 1024 for v in FACE_BOX_1024]] * b, np.float32)
    rows, cols = P.fr_matrices(boxes, 0, size, size, [r.side for r in nets.recognisers.values()])
    temb = {}
    for n, rec in nets.recognisers.items():  # seeded target embeddings of each recogniser's width
        shape = jax.ShapeDtypeStruct((1, rec.side, rec.side, 3), jnp.float32)
        dim = jax.eval_shape(rec.apply, nets.fr_params[n], shape).shape[-1]
        temb[n] = np.random.default_rng(1).standard_normal((b, dim)).astype(np.float32)
    aug = jnp.stack([jax.random.fold_in(k, 1) for k in keys])
    jobs = []
    for sl in groups:
        n = sl.stop - sl.start
        g_in = put_batched(broadcast_params(nets.g_params, n), mesh)
        lay = P._layout_fn(nets.synthesis, True, mesh)  # the weights laid out once, as the pipeline's search does
        g_in = compiled(lay, g_in)(g_in)
        w0p, noisep = put_batched((jnp.asarray(wplus[sl]), [x[sl] for x in noise]), mesh)
        _, feat = compiled(src_fn, g_in, w0p, noisep, shared["clip"])(g_in, w0p, noisep, shared["clip"])
        sub = jax.tree.map(lambda x: x[sl], put_batched((rows, cols, temb, {}, temb[cfg.search.victim], aug), mesh))
        inputs = SearchInputs(w0p, tuple(noisep), feat, *sub)
        jobs.append([put_batched(init_state(inputs, nets.synthesis, cfg.search), mesh), inputs, g_in,
                     put_batched(persp[sl], mesh)])
    exe = compiled(step_fn, jobs[0][0], jobs[0][1], jobs[0][2], shared, jnp.int32(0), jobs[0][3])
    counter = {"i": 0}

    def call():
        for job in jobs:
            job[0], aux = exe(job[0], job[1], job[2], shared, jnp.int32(counter["i"]), job[3])
        counter["i"] += 1
        jax.block_until_ready(aux["loss"])
    return call, {"what": "one adversarial search step (text features computed once, networks frozen)",
                  "mode": "loop" if loop else "one program", "xla_temp_gib": _temp_gib(exe)}


def stage_tipim(opts: dict):
    import jax

    from jaxprotect.methods.tipim import attack as tipim
    from jaxprotect.recognition import from_network, recogniser_and_params

    sizes, b = opts["sizes"], opts["batch"]
    t = sizes["tipim_targets"]
    if sizes["quick"]:
        from jaxprotect.toy import toy_recogniser

        net = toy_recogniser("tiny", 16, seed=5)
        sur, params = from_network(net), net.params
    else:
        import bench_clip2protect

        from jaxprotect.registry import load_network

        net = load_network("irse50", bench_clip2protect.cached_checkpoints()["irse50"])
        sur, params = recogniser_and_params(net)  # as the pixel protector's load_surrogates
    cfg = tipim.TipimConfig()
    clean = jax.numpy.asarray(unit_images(b, 112, seed=2) * 255)
    surs, ps = (sur,), (params,)
    target_feats = tipim.target_features(surs, ps, unit_images(t, 112, seed=3) * 255)
    init_feats = tipim._jitted_features(surs)(ps, clean)
    step = tipim._jitted_step(surs, cfg)
    state = {"s": tipim.tipim_init(clean), "i": 0}
    key = jax.random.key(0)
    exe = step.lower(ps, state["s"], clean, init_feats, target_feats, key).compile()

    def call():
        state["s"], _ = exe(ps, state["s"], clean, init_feats, target_feats, jax.random.fold_in(key, state["i"]))
        state["i"] += 1
        jax.block_until_ready(state["s"].images)
    return call, {"what": f"one TIP-IM iteration ({t} targets, {sur.name} at {sur.input_size[0]} px)",
                  "xla_temp_gib": _temp_gib(exe)}


def stage_mtcnn(opts: dict):
    from jaxprotect.registry import load_network

    mtcnn = load_network("mtcnn")
    img = photo(opts["sizes"].get("mtcnn_size"))

    def call():
        return mtcnn.detect(img)
    return call, {"what": f"MTCNN detect on the {img.shape[1]}x{img.shape[0]} photo"}


STAGES = {
    "stylegan2_forward": lambda o: stage_stylegan2(o, backward=False),
    "stylegan2_forward_backward": lambda o: stage_stylegan2(o, backward=True),
    "search_step": stage_search,
    "finetune_step": stage_finetune,
    "tipim_step": stage_tipim,
    "mtcnn": stage_mtcnn,
}


def run(stage: str, opts: dict) -> dict:
    """Set up ``stage``, time it (the first call includes compilation), return the result record."""
    import jax

    fn, info = STAGES[stage](opts)
    result = measure(fn, opts["runs"], opts.get("warmup", 1))
    result.update(info)
    result.update({"jax": jax.__version__, "backend": jax.default_backend(), "patches": []})
    if jax.default_backend() != "cpu":
        stats = jax.devices()[0].memory_stats() or {}
        result["device_peak_bytes"] = int(stats.get("peak_bytes_in_use", -1))
    return result
