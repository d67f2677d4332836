"""Stage 2 of CLIP2Protect: the adversarial latent search (``adversarial_optimization.py``).

Per photo, Adam (lr 0.01, betas (0.9, 0.999)) moves the W+ code and the noise maps below
512 px for 50 steps. Each step, upstream:

    img  = ((G(w, noise) + 1) / 2).clamp(0, 1)                       full frame, [0, 1]
    c    = NCELoss(img_org, "face", RandomPerspective(img), prompt)     CLIP InfoNCE, img_org = G(w0) once
    l2   = sum((w0 - w)^2)
    x    = (img[box] - 0.5) * 2, bilinear-resized to 112 / 160          per recogniser
    adv  = sum over the 3 surrogates of 1 - cos(emb(x), emb(target))   (- the same with the source when dodging)
    loss = 0.01 l2 + 0.7 adv + 0.3 c
    backward; grad of W+ rows 0..7 := 0; Adam step

and the result is the image of the LAST step's forward, taken before that step's update
(``final_image="pre_update"``). Here that is: ``steps - 1`` updates with :func:`make_step`, then
one forward with :func:`make_evaluate` (which also gives the final similarities); the 50th
update, which upstream computes and throws away, is skipped. ``"post_update"`` makes all
``steps`` updates and evaluates after them.

Everything is written for a batch of photos [B, ...]: the loss of the batch is the sum of the
per-photo losses, so each photo's gradient is exactly its own; Adam is elementwise. The
recognisers and CLIP run batched with shared weights; the generator as :mod:`generator` says.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxprotect.methods.clip2protect.config import ExecutionConfig, SearchConfig
from jaxprotect.methods.clip2protect.generator import Synthesis
from jaxprotect.methods.clip2protect.ops import cos_simi, crop_resize, to_unit_interval
from jaxprotect.methods.clip2protect.perspective import random_coeffs, warp_perspective
from jaxprotect.recognition import cosine

__all__ = [
    "SearchModels",
    "SearchInputs",
    "SearchState",
    "noise_split",
    "search_optimizer",
    "init_state",
    "make_source_image",
    "make_step",
    "make_evaluate",
    "row_mask",
    "step_perspective",
]


@dataclasses.dataclass(frozen=True, eq=False)
class SearchModels:
    """The static half of the networks (their params travel in ``shared``).

    ``recognisers``: name -> :class:`jaxprotect.recognition.Recogniser` for the surrogates and the victim.
    ``clip_features(clip_params, images01 [A, H, W, 3]) -> [A, D]``: L2-normalised CLIP image
    features after NCELoss' preprocessing; ``clip_nce(text, source [1, D], target [A, D]) ->
    scalar``: NCELoss.infonce_loss on features (the source features are computed once per photo).
    """

    synthesis: Synthesis
    recognisers: dict
    clip_features: Callable
    clip_nce: Callable


class SearchInputs(NamedTuple):
    """Per-photo constants of the search (a leading batch axis B on every leaf).

    w0 [B, L, 512] e4e code; noise: tuple of [B, *shape] stage-1 noise maps; source_feat
    [B, 1, D] CLIP features of clamp((G(w0)+1)/2) (upstream ``img_org_``, constant); rows/cols: {str(size): [B, size, H]}
    FR crop-and-resize matrices; target_emb / source_emb / eval_emb: {name: [B, D]} (source_emb
    only when dodging, eval_emb for the victim); key [B] PRNG keys of the augmentation.
    """

    w0: Any
    noise: tuple
    source_feat: Any
    rows: dict
    cols: dict
    target_emb: dict
    source_emb: dict
    eval_emb: Any
    key: Any


class SearchState(NamedTuple):
    """What Adam moves: w [B, L, 512], noise_opt (the optimised maps), and Adam's state."""

    w: Any
    noise_opt: tuple
    opt_state: Any


def noise_split(synthesis: Synthesis, cfg: SearchConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(optimised, fixed) noise-map indices: maps with side < ``cfg.noise_max_res`` move when
    ``cfg.noise_optimize`` (upstream: ``nois.shape[2] < 512``); the rest stay as drawn in stage 1."""
    res = synthesis.noise_resolutions()
    opt = tuple(i for i, r in enumerate(res) if cfg.noise_optimize and r < cfg.noise_max_res)
    return opt, tuple(i for i in range(len(res)) if i not in opt)


def search_optimizer(cfg: SearchConfig) -> optax.GradientTransformation:
    """``torch.optim.Adam([latent] + noise_maps, lr=0.01)``: constant lr, betas, eps 1e-8."""
    return optax.adam(cfg.lr, b1=cfg.betas[0], b2=cfg.betas[1], eps=cfg.eps)


def row_mask(n_latent: int, frozen_rows: int):
    """[n_latent, 1] bool, False for the rows whose gradient upstream zeroes (``latent.grad[0][0:8] = 0``)."""
    return (jnp.arange(n_latent) >= frozen_rows)[:, None]


def init_state(inputs: SearchInputs, synthesis: Synthesis, cfg: SearchConfig) -> SearchState:
    """Initial state: w = w0 (a copy), the optimised noise maps, fresh Adam moments."""
    opt_idx, _ = noise_split(synthesis, cfg)
    w = jnp.array(inputs.w0, copy=True)
    noise_opt = tuple(jnp.array(inputs.noise[i], copy=True) for i in opt_idx)
    # One Adam per photo (its step count too): init/update are vmapped over the photo axis.
    return SearchState(w, noise_opt, jax.vmap(search_optimizer(cfg).init)((w, noise_opt)))


def _merge_noise(noise_opt, inputs: SearchInputs, opt_idx) -> list:
    noise = list(inputs.noise)
    for j, i in enumerate(opt_idx):
        noise[i] = noise_opt[j]
    return noise


def step_perspective(key, step, cfg: SearchConfig, height: int, width: int):
    """The RandomPerspective coefficients [num_aug, 8] one photo's CLIP term uses at ``step``
    when none are given: ``cfg.num_aug`` draws from ``split(fold_in(key, step), num_aug)``
    (``key``: the photo's augmentation key, ``SearchInputs.key``)."""
    keys = jax.random.split(jax.random.fold_in(key, step), cfg.num_aug)
    return jnp.stack([random_coeffs(k, height, width, cfg.distortion_scale) for k in keys])


def make_source_image(models: SearchModels, cfg: SearchConfig, ex: ExecutionConfig, per_photo_params: bool):
    """``f(g_params, w0 [B, L, 512], noise, clip_params) -> (source01 [B, H, W, 3], feat [B, 1, D])``:
    upstream ``get_image_gen`` (clamp((G(w0)+1)/2, 0, 1), once per photo, no gradient) and its
    CLIP features, which every step's NCE loss compares against."""

    def source(g_params, w0, noise, clip_params):
        raw = models.synthesis.images(g_params, w0, noise, per_photo_params=per_photo_params,
                                      batching=ex.generator_batching, remat=False)
        img01 = to_unit_interval(raw)
        feat = jax.vmap(lambda im: models.clip_features(clip_params, im[None]))(img01)
        return img01, feat

    return source


def _clip_term(models, cfg, shared, source_feat, img01, coeffs, step):
    """NCELoss(img_org, source_text, RandomPerspective(img) x num_aug, prompt) for one photo;
    ``coeffs`` [num_aug, 8] are the warps (see :func:`step_perspective`)."""
    if cfg.augment:
        aug = jnp.stack([warp_perspective(img01, c) for c in coeffs])
        return models.clip_nce(shared["text"], source_feat, models.clip_features(shared["clip"], aug))
    # Without augmentation the first step's image IS the source image: upstream's query
    # normalize(CLIP(img) - CLIP(img_org)) is 0/0 = NaN and poisons Adam. Guard: that step's CLIP
    # term is 0 with zero gradient; the degenerate input never reaches the loss (a stand-in is fed).
    aug = jnp.broadcast_to(img01, (cfg.num_aug,) + img01.shape)
    first = step == 0
    safe = jnp.where(first, jax.lax.stop_gradient(1.0 - aug), aug)
    value = models.clip_nce(shared["text"], source_feat, models.clip_features(shared["clip"], safe))
    return jnp.where(first, 0.0, value)


def _embeddings(models, shared, x, one, names):
    """{name: embedding [D]} of the FR crops of one photo ``x`` [H, W, 3] in [-1, 1]."""
    out = {}
    for name in names:
        rec = models.recognisers[name]
        size = str(rec.side)
        face = crop_resize(x, one.rows[size], one.cols[size])
        out[name] = rec.apply(shared["fr"][name], face[None])[0]
    return out


def _photo_terms(models, cfg, img01, w, inputs_one, shared, step, coeffs, with_victim):
    """Loss terms of ONE photo: img01 [H, W, 3], w [L, 512], inputs without the batch axis."""
    if coeffs is None and cfg.augment:
        coeffs = step_perspective(inputs_one.key, step, cfg, img01.shape[0], img01.shape[1])
    c_loss = _clip_term(models, cfg, shared, inputs_one.source_feat, img01, coeffs, step)
    l2 = jnp.sum((inputs_one.w0 - w) ** 2)
    x = (img01 - 0.5) * 2.0
    names = cfg.surrogates + ((cfg.victim,) if with_victim else ())
    embs = _embeddings(models, shared, x, inputs_one, names)
    sims = {n: cos_simi(embs[n], inputs_one.target_emb[n]) for n in cfg.surrogates}
    adv = 0.0
    for name in cfg.surrogates:  # upstream summation order
        adv = adv + (1.0 - sims[name])
    if not cfg.impersonate:
        dis = 0.0
        for name in cfg.surrogates:
            dis = dis + (1.0 - cos_simi(embs[name], inputs_one.source_emb[name]))
        adv = adv - dis
    loss = cfg.lambda_lat * l2 + cfg.lambda_adv * adv + cfg.lambda_clip * c_loss
    aux = {"loss": loss, "l2": l2, "adv": adv, "clip": c_loss, "sim": sims}
    if with_victim:
        aux["victim_sim"] = cosine(embs[cfg.victim], inputs_one.eval_emb)
    return loss, aux


def _batch_loss(models, cfg, ex, per_photo_params, opt_vars, inputs, g_params, shared, step, perspective, remat,
                with_victim=False):
    w, noise_opt = opt_vars
    opt_idx, _ = noise_split(models.synthesis, cfg)
    noise = _merge_noise(noise_opt, inputs, opt_idx)
    raw = models.synthesis.images(g_params, w, noise, per_photo_params=per_photo_params,
                                  batching=ex.generator_batching, remat=remat)
    img01 = to_unit_interval(raw)
    if perspective is None:
        losses, aux = jax.vmap(
            lambda im, ww, one: _photo_terms(models, cfg, im, ww, one, shared, step, None, with_victim)
        )(img01, w, inputs)
    else:
        losses, aux = jax.vmap(
            lambda im, ww, one, c: _photo_terms(models, cfg, im, ww, one, shared, step, c, with_victim)
        )(img01, w, inputs, perspective)
    return jnp.sum(losses), (aux, img01)


def make_step(models: SearchModels, cfg: SearchConfig, ex: ExecutionConfig, per_photo_params: bool,
              full_aux: bool = False):
    """``step(state, inputs, g_params, shared, step_index, perspective=None) -> (state, aux)``: one
    upstream iteration for a batch of photos (forward, backward, W+ rows 0..frozen_rows-1 zeroed, Adam).

    ``shared`` = {"fr": {name: params}, "clip": params, "text": text features}. ``perspective``:
    the RandomPerspective coefficients [B, num_aug, 8] of this step's CLIP views; None draws them
    from ``inputs.key`` (:func:`step_perspective`, what the pipeline does). ``aux`` holds the
    per-photo loss terms of this step's forward ({"loss", "l2", "adv", "clip": [B], "sim":
    {name: [B]}}); with ``full_aux`` also "victim_sim" [B] (the held-out recogniser's cosine to the
    evaluation photo, on this forward), "grad" {"w": [B, L, 512], "noise": tuple} (the gradient
    Adam receives, after the row mask) and "image" [B, H, W, 3] (this forward's image in [0, 1]).
    Pure; jit it (donate ``state``) or wrap it in :func:`jaxprotect.runtime.over_batch`.
    """
    opt = search_optimizer(cfg)
    mask = row_mask(models.synthesis.n_latent, cfg.frozen_rows)

    def step(state: SearchState, inputs: SearchInputs, g_params, shared, step_index, perspective=None):
        grad_fn = jax.value_and_grad(
            lambda v: _batch_loss(models, cfg, ex, per_photo_params, v, inputs, g_params, shared, step_index,
                                  perspective, ex.remat, full_aux),
            has_aux=True,
        )
        (_, (aux, img01)), (gw, gnoise) = grad_fn((state.w, state.noise_opt))
        gw = jnp.where(mask[None], gw, jnp.zeros_like(gw))  # latent.grad[0][0:8] = 0, before Adam
        params = (state.w, state.noise_opt)
        updates, opt_state = jax.vmap(opt.update)((gw, gnoise), state.opt_state, params)
        w, noise_opt = optax.apply_updates(params, updates)
        if full_aux:
            aux = dict(aux, grad={"w": gw, "noise": tuple(gnoise)}, image=img01)
        return SearchState(w, tuple(noise_opt), opt_state), aux

    return step


def make_evaluate(models: SearchModels, cfg: SearchConfig, ex: ExecutionConfig, per_photo_params: bool):
    """``evaluate(state, inputs, g_params, shared, step_index, perspective=None) -> (img01 [B, H, W, 3], aux)``:
    the forward of step ``step_index`` without an update (the protected image), its loss terms,
    and ``aux["final_sim"]`` = {name: cos(emb(final crop), emb(target))} for ALL recognisers,
    ``aux["victim_sim"]`` = cos(victim(final crop), victim(target_eval)) (upstream ``black_box``)."""

    def evaluate(state: SearchState, inputs: SearchInputs, g_params, shared, step_index, perspective=None):
        _, (aux, img01) = _batch_loss(models, cfg, ex, per_photo_params, (state.w, state.noise_opt), inputs,
                                      g_params, shared, step_index, perspective, False)
        embs = jax.vmap(lambda im, one: _embeddings(models, shared, (im - 0.5) * 2.0, one, tuple(models.recognisers))
                        )(img01, inputs)
        aux = dict(aux)
        aux["final_sim"] = {n: jax.vmap(cos_simi)(embs[n], inputs.target_emb[n]) for n in models.recognisers}
        aux["victim_sim"] = cosine(embs[cfg.victim], inputs.eval_emb)
        return img01, aux

    return evaluate
