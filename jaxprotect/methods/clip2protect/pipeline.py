"""CLIP2Protect end to end for a batch of aligned photos: e4e inversion, generator fine-tuning,
adversarial latent search, evaluation on the held-out recogniser.

Photos are batched: per-photo arrays carry a leading axis B, the stages are jit-compiled and
wrapped in ``shard_map`` over a 1-D device mesh (:mod:`jaxprotect.runtime`), so B photos spread
over the devices; on one device the mesh has one entry. Each photo's randomness comes only from
its own key (noise maps: ``fold_in(key, 0)``; the RandomPerspective of step i:
:func:`search.step_perspective` of ``fold_in(key, 1)``), so a photo gets the same result alone or
in any batch, and every draw can be passed in instead (``noise=``, ``perspective=``).

The stage loops can hand their state out after every step (``on_step``: what a job saves as a
checkpoint) and start from such a state (``resume``): a batch resumed at step k ends exactly as
an uninterrupted one. A mesh may span JAX processes: each process then passes its own photos
(the same number on every process) and gets its own photos' results back
(:mod:`jaxprotect.runtime`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxprotect.methods.clip2protect.config import Clip2ProtectConfig, ExecutionConfig, FinetuneConfig, SearchConfig
from jaxprotect.methods.clip2protect.finetune import (
    FinetuneState,
    FinetuneTarget,
    broadcast_params,
    draw_noise,
    finetune_target,
    init_finetune,
    make_finetune_step,
    resize_for_loss,
)
from jaxprotect.methods.clip2protect.generator import Synthesis
from jaxprotect.methods.clip2protect.inversion import invert, photo_to_unit
from jaxprotect.methods.clip2protect.ops import crop_resize, crop_resize_matrices
from jaxprotect.methods.clip2protect.search import (
    SearchInputs,
    SearchModels,
    init_state,
    make_evaluate,
    make_source_image,
    make_step,
    noise_split,
    step_perspective,
)
from jaxprotect.recognition import Recogniser
from jaxprotect.runtime import (
    batch_mesh,
    compiled,
    local_batch,
    local_rows,
    over_batch,
    pad_batch,
    padded_size,
    put_batched,
    put_replicated,
)

__all__ = ["Networks", "face_embeddings", "fr_matrices", "draw_photo_noise", "draw_perspectives", "search_setup",
           "protect_batch", "finetune_batch", "batching_mode"]


@dataclasses.dataclass(eq=False)
class Networks:
    """Everything CLIP2Protect runs, static parts and params.

    ``synthesis`` + ``g_params`` (pretrained generator); ``lpips_apply(params, a, b) -> [N]`` +
    ``lpips_params``; ``recognisers`` {name: :class:`~jaxprotect.recognition.Recogniser`} (the 3
    surrogates and the victim) + ``fr_params``; ``clip_features(clip_params, images01) -> [A, D]`` and
    ``clip_nce(text, source [1, D], target [A, D]) -> scalar`` (see :class:`SearchModels`) +
    ``clip_params`` + ``text`` (text features, computed once per prompt pair);
    ``e4e(images [N, 256, 256, 3] in [-1, 1]) -> W+`` (may be None when codes are given);
    ``lpips_features(params, images) -> features`` that ``lpips_apply`` accepts as its b (optional:
    the tuning loss then runs the LPIPS trunk on the photo once instead of every step).
    """

    synthesis: Synthesis
    g_params: Any
    lpips_apply: Callable | None
    lpips_params: Any
    recognisers: dict
    fr_params: dict
    clip_features: Callable
    clip_nce: Callable
    clip_params: Any
    text: Any
    e4e: Callable | None = None
    lpips_features: Callable | None = None

    @functools.cached_property
    def search_models(self) -> SearchModels:
        return SearchModels(self.synthesis, self.recognisers, self.clip_features, self.clip_nce)

    def shared(self) -> dict:
        """The replicated params of the search step."""
        return {"fr": self.fr_params, "clip": self.clip_params, "text": self.text}


def fr_matrices(boxes, margin: int, height: int, width: int, sizes) -> tuple[dict, dict]:
    """({str(size): rows [B, size, H]}, {str(size): cols [B, size, W]}) crop-and-resize matrices
    for MTCNN ``boxes`` [B, 4] (x1, y1, x2, y2) and each recogniser input size."""
    rows, cols = {}, {}
    for size in sorted(set(int(s) for s in sizes)):
        pairs = [crop_resize_matrices(b, margin, height, width, size) for b in boxes]
        rows[str(size)] = np.stack([p[0] for p in pairs])
        cols[str(size)] = np.stack([p[1] for p in pairs])
    return rows, cols


@functools.partial(jax.jit, static_argnums=0)
def _embed(rec: Recogniser, params, x01, rows, cols):
    face = crop_resize((x01 - 0.5) * 2.0, rows, cols)
    return rec.apply(params, face[None])[0]


def face_embeddings(nets: Networks, photo_uint8, box, margin: int, names=None) -> dict:
    """{name: embedding [D]} of the face in ``photo_uint8`` [H, W, 3] (any size): upstream's
    ``(crop(ToTensor(photo)) - 0.5) * 2`` bilinear-resized to each recogniser's input size.
    ``box`` (x1, y1, x2, y2), Python-rounded with ``margin`` as upstream."""
    x01 = jnp.asarray(photo_to_unit(photo_uint8))
    h, w = x01.shape[:2]
    out = {}
    for name in names or nets.recognisers:
        rec = nets.recognisers[name]
        rows, cols = crop_resize_matrices(box, margin, h, w, rec.side)
        out[name] = _embed(rec, nets.fr_params[name], x01, rows, cols)
    return out


def _real_images(photos_uint8, cfg: FinetuneConfig):
    """``Normalize(0.5, 0.5)(ToTensor(photo))`` resized for the tuning loss: [B, s, s, 3] in [-1, 1]."""
    real = (photo_to_unit(np.asarray(photos_uint8)) - np.float32(0.5)) / np.float32(0.5)
    return resize_for_loss(jnp.asarray(real), cfg)


def draw_photo_noise(keys, synthesis: Synthesis) -> list:
    """The stage-1 noise maps of B photos, as the pipeline draws them when none are given: a list of
    [B, *shape] arrays, photo b's from ``draw_noise(fold_in(keys[b], 0))``."""
    per_photo = [draw_noise(jax.random.fold_in(k, 0), synthesis) for k in keys]
    return [jnp.stack([p[i] for p in per_photo]) for i in range(len(synthesis.noise_shapes))]


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _perspectives(keys, steps, cfg: SearchConfig, height: int, width: int):
    aug = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    per_step = lambda i: jax.vmap(lambda k: step_perspective(k, i, cfg, height, width))(aug)  # noqa: E731
    return jax.vmap(per_step)(steps)


def draw_perspectives(keys, cfg: SearchConfig, size: int) -> jax.Array:
    """The RandomPerspective coefficients of every search step, as the pipeline draws them when
    none are given: [steps, B, num_aug, 8] for photos with ``keys`` [B] and images of side ``size``
    (zeros when ``cfg.augment`` is off)."""
    if not cfg.augment:
        return jnp.zeros((cfg.steps, len(keys), cfg.num_aug, 8), jnp.float32)
    return _perspectives(jnp.asarray(keys), jnp.arange(cfg.steps), cfg, size, size)


def batching_mode(ex: ExecutionConfig, mesh) -> str:
    """How photos with per-photo generator weights are batched: ``ex.generator_batching``, where
    "auto" is "loop" on a single CPU device (each photo runs the batch-1 program in turn: XLA's CPU
    backend runs per-photo weights as grouped convolutions, 4-5x slower per photo at 1024, and
    differentiating weights through ``lax.map`` is slower still) and "vmap" otherwise."""
    mode = ex.generator_batching
    if mode != "auto":
        return mode
    single_cpu = jax.default_backend() == "cpu" and (mesh is None or mesh.devices.size == 1)
    return "loop" if single_cpu else "vmap"


def _tick(progress, stage, done, total):
    if progress is not None:
        progress(stage, done, total)


@functools.lru_cache(maxsize=16)
def _finetune_fn(synthesis, lpips_apply, cfg: FinetuneConfig, ex: ExecutionConfig, mesh):
    """The compiled tuning step (cached by the sections it reads and the mesh)."""
    step = make_finetune_step(synthesis, lpips_apply, cfg, ex)
    return over_batch(step, mesh, (True, True, True, True, False), donate=(0,))


@functools.lru_cache(maxsize=16)
def _search_fns(models, cfg: SearchConfig, ex: ExecutionConfig, per_photo, mesh):
    """(source image, step, evaluate), compiled over the mesh (cached by the sections they read)."""
    gb = per_photo
    return (
        over_batch(make_source_image(models, cfg, ex, per_photo), mesh, (gb, True, True, False)),
        over_batch(make_step(models, cfg, ex, per_photo), mesh, (True, True, gb, False, False, True), donate=(0,)),
        over_batch(make_evaluate(models, cfg, ex, per_photo), mesh, (True, True, gb, False, False, True)),
    )


@functools.lru_cache(maxsize=16)
def _layout_fn(synthesis, per_photo, mesh):
    """The generator's weights laid out once for the search (``Synthesis.frozen_layout``), over the mesh."""
    if per_photo:
        return over_batch(jax.vmap(synthesis.frozen_layout), mesh, (True,))
    return jax.jit(synthesis.frozen_layout)


def _check_resumable(resume, on_step, b, mode):
    if (resume is not None or on_step is not None) and b > 1 and mode == "loop":
        raise ValueError("resume/on_step need photos that step together: run one photo at a time in 'loop' batching")


def finetune_batch(nets: Networks, w0, noise, real, cfg: Clip2ProtectConfig, *, mesh=None, progress=None,
                   carry=None, resume=None, on_step=None):
    """Stage 1 for B photos. Returns (per-photo params [B, ...], losses [B, steps], carry).

    Default: each photo tunes its own copy of ``nets.g_params`` (batched over the mesh, or one
    photo after the other with :func:`batching_mode` "loop").
    ``on_step(stage, step, total, snapshot)`` is called after every step (``stage`` "fine-tune",
    ``step`` steps done); ``snapshot()`` returns host arrays {"params", "opt_state" (the
    leaves of the params and of their Adam state, each [B, ...], in ``jax.tree.leaves`` order),
    "losses" [B, step]}. ``resume``: such a snapshot plus "step", to continue from (not with
    ``sequential_generator``, nor "loop" with B > 1).
    ``cfg.finetune.sequential_generator``: photos one by one in order, each starting from the
    generator and Adam state left by the previous one (``carry``, None = pretrained weights, fresh
    Adam); the returned carry continues the chain into the next batch.
    """
    ft, ex = cfg.finetune, cfg.execution
    b = w0.shape[0]
    if ft.sequential_generator and (resume is not None or on_step is not None):
        raise ValueError("resume/on_step are not available with sequential_generator (the photos depend on each other)")
    real = _finetune_real(nets, real)
    if ft.sequential_generator:
        one = batch_mesh(jax.devices()[:1])
        run = _finetune_fn(nets.synthesis, nets.lpips_apply, ft, ex, one)
        state = carry if carry is not None else init_finetune(broadcast_params(nets.g_params, 1), ft)
        state = put_batched(state, one)
        lp = put_replicated(nets.lpips_params, one)
        params, curves = [], []
        for i in range(b):
            losses = []
            x = put_batched(jax.tree.map(lambda a: a[i:i + 1], (w0, list(noise), real)), one)
            for t in range(ft.steps):
                state, loss = compiled(run, state, *x, lp)(state, *x, lp)
                losses.append(np.asarray(loss)[0])
                _tick(progress, "fine-tune", i * ft.steps + t + 1, b * ft.steps)
            params.append(jax.tree.map(jnp.copy, state.params))  # the state's buffers are donated next step
            curves.append(losses)
        stacked = jax.tree.map(lambda *xs: jnp.concatenate(xs), *params)
        return stacked, np.asarray(curves, np.float32).reshape(b, ft.steps), state
    mesh = mesh or batch_mesh(jax.devices()[:1])
    _check_resumable(resume, on_step, b, batching_mode(ex, mesh))
    if b > 1 and batching_mode(ex, mesh) == "loop":
        parts = []
        for i in range(b):
            sl = slice(i, i + 1)
            step_progress = None if progress is None else (
                lambda st, d, t, i=i: progress(st, i * ft.steps + d, b * ft.steps))
            part_real = jax.tree.map(lambda a, sl=sl: a[sl], real)
            parts.append(finetune_batch(nets, w0[sl], [n[sl] for n in noise], part_real, cfg, mesh=mesh,
                                        progress=step_progress)[:2])
        params = jax.tree.map(lambda *xs: jnp.concatenate(xs), *[p[0] for p in parts])
        return params, np.concatenate([p[1] for p in parts]), None
    size = padded_size(b, mesh)
    fn = _finetune_fn(nets.synthesis, nets.lpips_apply, ft, ex, mesh)
    start, losses = 0, []
    if resume is not None and resume.get("params") is None:  # stand-in photos joining at step t: fresh state
        start = int(resume["step"])
        losses = [np.zeros(b, np.float32)] * start
        state = init_finetune(broadcast_params(nets.g_params, size), ft)
    elif resume is not None:
        start = int(resume["step"])
        params = unflatten_like(nets.g_params, resume["params"], batched=True)
        opt_template = jax.eval_shape(lambda: init_finetune(broadcast_params(nets.g_params, b), ft).opt_state)
        state = pad_batch(FinetuneState(params, unflatten_like(opt_template, resume["opt_state"])), b, size)
        losses = list(np.asarray(resume["losses"], np.float32).T[:start])
    else:
        state = init_finetune(broadcast_params(nets.g_params, size), ft)
    state = put_batched(state, mesh)
    w_, noise_, real_ = put_batched(pad_batch((w0, list(noise), real), b, size), mesh)
    lp = put_replicated(nets.lpips_params, mesh)
    for t in range(start, ft.steps):
        state, loss = compiled(fn, state, w_, noise_, real_, lp)(state, w_, noise_, real_, lp)
        losses.append(local_rows(loss)[:b])
        if on_step is not None:
            on_step("fine-tune", t + 1, ft.steps,
                    lambda: {"params": jax.tree.leaves(_host_rows(state.params, b)),
                             "opt_state": jax.tree.leaves(_host_rows(state.opt_state, b)),
                             "losses": np.stack(losses, axis=1)})
        _tick(progress, "fine-tune", t + 1, ft.steps)
    params = local_batch(state.params, b)
    return params, np.stack(losses, axis=1) if losses else np.zeros((b, 0), np.float32), None


def _finetune_real(nets: Networks, real):
    """The photo as the tuning step takes it: with its LPIPS features when ``nets`` can compute them."""
    if nets.lpips_features is None or isinstance(real, FinetuneTarget):
        return real
    return finetune_target(real, nets.lpips_features, nets.lpips_params)


def unflatten_like(template, leaves, batched: bool = False):
    """``leaves`` (a list of arrays in ``jax.tree.leaves`` order, or a tree with such leaves) put
    back into ``template``'s structure; each leaf must have its template's shape, after a
    leading photo axis when ``batched`` and the template has none (``ValueError`` otherwise)."""
    given = [np.asarray(x) for x in jax.tree.leaves(leaves)]
    want, treedef = jax.tree.flatten(template)
    if len(given) != len(want):
        raise ValueError(f"a saved state has {len(given)} arrays where {len(want)} are expected")
    for g, w in zip(given, want):
        shape = tuple(g.shape[1:]) if batched else tuple(g.shape)
        if shape != tuple(w.shape):
            raise ValueError(f"a saved state array has shape {g.shape}, expected {w.shape}"
                             + (" after the photo axis" if batched else ""))
    return jax.tree.unflatten(treedef, given)


def _host_rows(tree, b: int):
    """This process's first ``b`` rows of every leaf, as host arrays (a copy: the state's device
    buffers are donated to the next step)."""
    return jax.tree.map(lambda x: np.array(local_rows(x)[:b]), tree)


def _final_noise(state, noise, synthesis, cfg: SearchConfig, b) -> list:
    """All noise maps after the search: the optimised ones from the state, the others as drawn."""
    opt_idx, _ = noise_split(synthesis, cfg)
    out = [np.asarray(n)[:b] for n in noise]
    for j, i in enumerate(opt_idx):
        out[i] = local_rows(state.noise_opt[j])[:b]
    return out


def _concat(parts: list):
    """Join per-photo result dicts along the photo axis (nested dicts and lists too)."""
    first = parts[0]
    if isinstance(first, dict):
        return {k: _concat([p[k] for p in parts]) for k in first}
    if isinstance(first, (list, tuple)):
        return [_concat([p[i] for p in parts]) for i in range(len(first))]
    return np.concatenate([np.asarray(p) for p in parts], axis=0)


def protect_batch(
    nets: Networks,
    photos_uint8,
    boxes,
    keys,
    target_emb: dict,
    eval_emb,
    cfg: Clip2ProtectConfig,
    *,
    w0=None,
    noise=None,
    perspective=None,
    mesh=None,
    progress: Callable | None = None,
    finetune_carry=None,
    resume: dict | None = None,
    on_step: Callable | None = None,
) -> dict:
    """Protect B aligned photos.

    ``photos_uint8`` [B, S, S, 3] RGB at the generator's size S; ``boxes`` [B, 4] their MTCNN
    face boxes (x1, y1, x2, y2) in that frame; ``keys`` [B] per-photo PRNG keys; ``target_emb``
    {name: [B, D]} target embeddings for all four recognisers; ``eval_emb`` [B, D] the victim's
    embedding of the evaluation photo (upstream ``target_eval``). ``w0``: e4e codes [B, L, 512]
    (computed with ``nets.e4e`` when None). Random draws, each taken from ``keys`` when not given:
    ``noise`` the stage-1 noise maps (a list of [B, *shape], :func:`draw_photo_noise`) and
    ``perspective`` the CLIP views' RandomPerspective coefficients [steps, B, num_aug, 8]
    (:func:`draw_perspectives`). ``mesh``: a :func:`jaxprotect.runtime.batch_mesh` (default: the
    first device). ``progress(stage, done, total)`` is called after every step.

    Checkpoints: ``on_step(stage, step, total, snapshot)`` is called after every step of either
    stage (``stage`` "fine-tune" or "search"; see :func:`finetune_batch` for the former's
    snapshot; the search's is {"state": :class:`~search.SearchState` leaves [B, ...], "curves":
    {"loss", "l2", "adv", "clip": [B, step], "sim": {name: [B, step]}}}). ``resume`` continues from
    such snapshots: {"stage": "fine-tune", "step": t, "finetune": snapshot} or {"stage": "search",
    "step": i, "finetune": {"params", "losses"} (the tuned generator, when stage 1 runs),
    "search": snapshot}; a snapshot of None starts that stage's state afresh at that step (stand-in
    photos that keep a batch spanning processes in step). Photos that step together only: not
    with ``sequential_generator`` nor, for B > 1, "loop" batching.

    Returns a dict of host arrays: ``protected`` [B, S, S, 3] in [0, 1] (the result),
    ``reconstruction`` [B, S, S, 3] (G(w0) after tuning), ``w0``, ``w`` [B, L, 512] (final
    state), ``noise`` (every map after the search), ``loss`` {term: [B, steps]} (each step's
    forward; the last entry is the evaluated forward), ``finetune_loss`` [B, finetune steps],
    ``final_sim`` {name: [B]}, ``victim_sim`` [B], plus ``finetune_carry`` for
    :attr:`FinetuneConfig.sequential_generator`.
    """
    photos_uint8 = np.asarray(photos_uint8)
    b, s = photos_uint8.shape[0], nets.synthesis.size
    if photos_uint8.shape[1:] != (s, s, 3):
        raise ValueError(f"photos must be [B, {s}, {s}, 3] uint8 (aligned to the generator), got {photos_uint8.shape}")
    keys = jnp.asarray(keys)
    if w0 is None:
        _tick(progress, "inversion", 0, 1)
        w0 = invert(nets.e4e, photos_uint8)
        _tick(progress, "inversion", 1, 1)
    w0 = jnp.asarray(w0, jnp.float32)
    noise = draw_photo_noise(keys, nets.synthesis) if noise is None else [jnp.asarray(n, jnp.float32) for n in noise]
    if perspective is None:
        perspective = draw_perspectives(keys, cfg.search, s)
    perspective = jnp.asarray(perspective, jnp.float32)
    if perspective.shape[:2] != (cfg.search.steps, b):
        raise ValueError(f"perspective must be [steps={cfg.search.steps}, B={b}, num_aug, 8], got {perspective.shape}")
    mesh = mesh or batch_mesh(jax.devices()[:1])
    stage = None if resume is None else resume["stage"]
    if stage not in (None, "fine-tune", "search"):
        raise ValueError(f"resume stage must be 'fine-tune' or 'search', got {stage!r}")

    if not cfg.finetune.runs:
        g_params, per_photo, ft_losses, carry = nets.g_params, False, np.zeros((b, 0), np.float32), finetune_carry
    elif stage == "search":
        tuned = resume.get("finetune")
        if tuned is None:  # stand-in photos: the pretrained generator
            g_params = broadcast_params(nets.g_params, b)
            ft_losses = np.zeros((b, cfg.finetune.steps), np.float32)
        else:
            g_params = unflatten_like(nets.g_params, tuned["params"], batched=True)
            ft_losses = np.asarray(tuned["losses"], np.float32)
        carry, per_photo = None, True
    else:
        real = _real_images(photos_uint8, cfg.finetune)
        ft_resume = dict(resume.get("finetune") or {}, step=resume["step"]) if stage == "fine-tune" else None
        g_params, ft_losses, carry = finetune_batch(nets, w0, noise, real, cfg, mesh=mesh, progress=progress,
                                                    carry=finetune_carry, resume=ft_resume, on_step=on_step)
        per_photo = True
    search_resume = (int(resume["step"]), resume.get("search")) if stage == "search" else None

    args = (photos_uint8, np.asarray(boxes), keys, {k: jnp.asarray(v) for k, v in target_emb.items()},
            jnp.asarray(eval_emb), w0, noise, g_params, jnp.swapaxes(perspective, 0, 1))
    _check_resumable(resume, on_step, b, batching_mode(cfg.execution, mesh) if per_photo else "vmap")
    if per_photo and batching_mode(cfg.execution, mesh) == "loop" and b > 1:
        one = batch_mesh(jax.devices()[:1])
        parts = []
        for i in range(b):
            sl = slice(i, i + 1)
            part = jax.tree.map(lambda x: x[sl], args)
            parts.append(_search(nets, cfg, *part, per_photo, one, progress, (i, b)))
        result = _concat(parts)
    else:
        if per_photo and batching_mode(cfg.execution, mesh) == "loop":
            mesh = batch_mesh(jax.devices()[:1])
        result = _search(nets, cfg, *args, per_photo, mesh, progress, (0, 1), search_resume, on_step)
    result.update(w0=np.asarray(w0), finetune_loss=ft_losses, finetune_carry=carry)
    return result


def _constant_inputs(nets: Networks, sc: SearchConfig, photos_uint8, boxes, keys) -> dict:
    """The search inputs that depend only on the photos: FR crop matrices, the source embeddings
    (when dodging) and the augmentation keys."""
    b, s = photos_uint8.shape[0], nets.synthesis.size
    rows, cols = fr_matrices(boxes, sc.margin, s, s, [r.side for r in nets.recognisers.values()])
    source_emb = {}
    if not sc.impersonate:
        per = [face_embeddings(nets, photos_uint8[i], boxes[i], sc.margin, sc.surrogates) for i in range(b)]
        source_emb = {n: jnp.stack([p[n] for p in per]) for n in sc.surrogates}
    return dict(rows=rows, cols=cols, source_emb=source_emb, key=jnp.stack([jax.random.fold_in(k, 1) for k in keys]))


def search_setup(nets: Networks, photos_uint8, boxes, keys, target_emb: dict, eval_emb, cfg: SearchConfig, *, w0,
                 noise=None, g_params=None):
    """Everything :func:`search.make_step`'s step takes, for driving the search by hand:
    ``(state, inputs, g_params, shared)`` for B photos on the default device.

    Arguments as :func:`protect_batch` (``cfg`` is the search section); ``noise`` defaults to
    :func:`draw_photo_noise` of ``keys``; ``g_params`` to the pretrained (shared) generator
    weights (pass ``per_photo_params=True`` to ``make_step`` for fine-tuned per-photo weights).
    """
    photos_uint8 = np.asarray(photos_uint8)
    keys = jnp.asarray(keys)
    w0 = jnp.asarray(w0, jnp.float32)
    noise = draw_photo_noise(keys, nets.synthesis) if noise is None else [jnp.asarray(n, jnp.float32) for n in noise]
    per_photo = g_params is not None
    g_params = nets.g_params if g_params is None else g_params
    models = nets.search_models
    source = jax.jit(make_source_image(models, cfg, ExecutionConfig(), per_photo))
    _, source_feat = source(g_params, w0, noise, nets.clip_params)
    const = _constant_inputs(nets, cfg, photos_uint8, np.asarray(boxes), keys)
    inputs = SearchInputs(w0=w0, noise=tuple(noise), source_feat=source_feat,
                          target_emb={k: jnp.asarray(v) for k, v in target_emb.items()},
                          eval_emb=jnp.asarray(eval_emb), **const)
    return init_state(inputs, nets.synthesis, cfg), inputs, g_params, nets.shared()


def _search(nets, cfg: Clip2ProtectConfig, photos_uint8, boxes, keys, target_emb, eval_emb, w0, noise, g_params,
            perspective, per_photo, mesh, progress, part, resume=None, on_step=None):
    """Stage 2 for a batch whose photos run together (see :func:`protect_batch`); ``perspective``
    is photo-major here: [B, steps, num_aug, 8]; ``resume`` (step, search snapshot)."""
    sc, ex = cfg.search, cfg.execution
    b = photos_uint8.shape[0]
    size = padded_size(b, mesh)
    models = nets.search_models
    const = _constant_inputs(nets, sc, photos_uint8, boxes, keys)

    src_fn, step_fn, eval_fn = _search_fns(models, sc, ex, per_photo, mesh)

    g_in = put_batched(pad_batch(g_params, b, size), mesh) if per_photo else put_replicated(g_params, mesh)
    if models.synthesis.frozen_layout is not None:  # the search never differentiates the generator's weights
        lay = _layout_fn(models.synthesis, per_photo, mesh)
        g_in = compiled(lay, g_in)(g_in)
    w0_l, noise_l, persp_l = pad_batch((w0, list(noise), perspective), b, size)
    w0_p, noise_p, persp_p = put_batched((w0_l, noise_l, persp_l), mesh)
    shared = put_replicated(nets.shared(), mesh)
    src_args = (g_in, w0_p, noise_p, shared["clip"])
    source01, source_feat = compiled(src_fn, *src_args)(*src_args)
    inputs = SearchInputs(w0=w0_p, noise=tuple(noise_p), source_feat=source_feat, target_emb=target_emb,
                          eval_emb=eval_emb, **const)
    inputs = inputs._replace(**{f: put_batched(pad_batch(getattr(inputs, f), b, size), mesh)
                                for f in ("rows", "cols", "target_emb", "source_emb", "eval_emb", "key")})
    n_updates = sc.updates
    done, parts = part[0] * sc.steps, part[1]
    curves, start = [], 0

    def fresh_state(rows: int):  # from this process's photos (only w0 and the noise maps are read)
        local = SearchInputs(w0_l[:rows], tuple(n[:rows] for n in noise_l), *([None] * 7))
        return init_state(local, nets.synthesis, sc)

    if resume is not None and resume[1] is None:  # stand-in photos joining at step i: fresh state
        start = resume[0]
        state = put_batched(fresh_state(size), mesh)
        zero = np.zeros(b, np.float32)
        curves = [{"loss": zero, "l2": zero, "adv": zero, "clip": zero, "sim": {n: zero for n in sc.surrogates}}
                  for _ in range(start)]
    elif resume is None:
        state = put_batched(fresh_state(size), mesh)
    else:
        start, snap = resume
        template = jax.eval_shape(lambda: fresh_state(b))
        state = put_batched(pad_batch(unflatten_like(template, snap["state"]), b, size), mesh)
        c = snap["curves"]
        curves = [{**{k: np.asarray(c[k])[:, t] for k in ("loss", "l2", "adv", "clip")},
                   "sim": {n: np.asarray(v)[:, t] for n, v in c["sim"].items()}} for t in range(start)]

    def snapshot():
        stacked = {k: np.stack([c[k] for c in curves], axis=1) for k in ("loss", "l2", "adv", "clip")}
        stacked["sim"] = {n: np.stack([c["sim"][n] for c in curves], axis=1) for n in sc.surrogates}
        return {"state": jax.tree.leaves(_host_rows(state, b)), "curves": stacked}

    for i in range(start, n_updates):
        args = (state, inputs, g_in, shared, jnp.int32(i), persp_p[:, i])
        state, aux = compiled(step_fn, *args)(*args)
        curves.append(jax.tree.map(lambda a: local_rows(a)[:b], aux))
        if on_step is not None:
            on_step("search", i + 1, n_updates, snapshot)
        _tick(progress, "search", done + i + 1, parts * sc.steps)
    last = min(n_updates, sc.steps - 1)  # post_update's extra forward reports its CLIP term on the last step's views
    args = (state, inputs, g_in, shared, jnp.int32(n_updates), persp_p[:, last])
    image, aux = compiled(eval_fn, *args)(*args)
    final = jax.tree.map(lambda a: local_rows(a)[:b], aux)
    _tick(progress, "search", done + sc.steps, parts * sc.steps)
    curves.append({k: final[k] for k in ("loss", "l2", "adv", "clip", "sim")})

    loss = {k: np.stack([c[k] for c in curves], axis=1) for k in ("loss", "l2", "adv", "clip")}
    loss["sim"] = {n: np.stack([c["sim"][n] for c in curves], axis=1) for n in sc.surrogates}
    return {
        "protected": local_rows(image)[:b],
        "reconstruction": local_rows(source01)[:b],
        "w": local_rows(state.w)[:b],
        "noise": _final_noise(state, noise, nets.synthesis, sc, b),
        "loss": loss,
        "final_sim": final["final_sim"],
        "victim_sim": final["victim_sim"],
    }
