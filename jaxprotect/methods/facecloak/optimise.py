"""FaceCloak's cloak functions (``src/cloak_functions.py``), as pure jit-able functions.

Crops are normalised face crops [S, S, 3] float32 in [-1, 1] (``divide``); perturbations are in
the same units. Recognisers are :class:`~jaxprotect.recognition.Recogniser` tuples with
their params; each gets the crop at its input size (all of FaceCloak's networks take 112) and
contributes its own loss against its own anchors (the code has one extractor; several add up).

``afog_cloak_multi`` (the default; attention + sign gradient, one mask for an identity):

* ``attn = 1``, ``pert = 2·ε·(U - 0.5)`` (``pert0`` is that draw: an input);
* for ``epochs`` × each crop ``k`` in order (sequential updates: a ``lax.scan``):
  ``x = crop_k + attn·pert`` (**no clamp**), ``loss = Σ triplet(normalize(f(x)))``,
  ``attn ← attn - attn_lr·(∇attn - mean(∇attn)) / (std(∇attn) + 0.01)`` (unbiased std over all
  S·S·3 elements), ``pert ← pert - step·sign(∇pert)``;
* output: ``mask = clip(attn·pert, ±ε)`` and the unclipped ``attn·pert`` the stickers and the
  high-pass part are read from (:func:`cloak_parts`).

In ``faithful`` mode the loss sees exactly the code's ``crop + attn·pert``: the stickers and
high-pass part are read out after each update and never enter the loss, and the final clip is not
in the loop. In ``corrected`` mode the loss sees what will be applied, ``clip(crop + delta, -1, 1)``
with ``delta = clip(n, ±ε) + clip(Σ stickers(n), ±σ_s) + filter·clip(n, ±σ_h)`` (``n =
attn·pert``); the clips are straight-through (value clipped, gradient passed) so the updates are
not starved once ``attn·pert`` leaves the budget, which it does after the first attention step.

The code's default DSSIM term has weight 0.0 (``percep_loss_weight``): it is computed and adds
nothing, so it is left out. ``pgd_cloak_multi``, ``pgd_cloak`` and ``afog_cloak`` (the other
functions the code offers) are ported below with their own quirks noted.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxprotect.methods.facecloak.config import FaceCloakConfig
from jaxprotect.methods.facecloak.highpass import extract_highpass
from jaxprotect.methods.facecloak.losses import surrogate_loss
from jaxprotect.methods.facecloak.stickers import apply_stickers_crop, extract_stickers
from jaxprotect.recognition import Recogniser
from jaxprotect.ops.resize import interpolate

__all__ = [
    "Anchors",
    "Geometry",
    "AfogState",
    "AfogResult",
    "CloakParts",
    "crop_embeddings",
    "cloak_loss",
    "clip_ste",
    "applied_delta",
    "afog_initial_perturbation",
    "afog_multi_step",
    "afog_cloak_multi",
    "afog_cloak_multi_batch",
    "cloak_parts",
    "PgdMultiState",
    "pgd_multi_step",
    "pgd_cloak_multi",
    "pgd_cloak",
    "afog_cloak",
]


class Anchors(NamedTuple):
    """Per surrogate, the L2-normalised far anchor [D_m] and near anchor [D_m]."""

    far: tuple
    near: tuple


class Geometry(NamedTuple):
    """What the probe crop fixes: sticker ``masks`` [4, S, S, 1] and high-pass ``filter`` [S, S, 3] (0/1)."""

    masks: jax.Array
    filter: jax.Array


class AfogState(NamedTuple):
    """``attn`` and ``pert`` [S, S, 3] of ``afog_cloak_multi``."""

    attn: jax.Array
    pert: jax.Array


class AfogResult(NamedTuple):
    """``mask`` = clip(attn·pert, ±ε) [S, S, 3]; ``perturbation`` the unclipped attn·pert;
    ``state`` the final :class:`AfogState`; ``losses`` [epochs·K] the loss at each update."""

    mask: jax.Array
    perturbation: jax.Array
    state: AfogState
    losses: jax.Array


class CloakParts(NamedTuple):
    """A learnt cloak in [-1, 1] units: ``mask`` [S, S, 3], ``stickers`` [4, S, S, 3] (zero outside
    their boxes), ``highpass`` [S, S, 3]."""

    mask: jax.Array
    stickers: jax.Array
    highpass: jax.Array


def _as_tuple(x):
    return (x,) if isinstance(x, Recogniser) else tuple(x)


def crop_embeddings(surrogate: Recogniser, params, crops):
    """Raw embeddings [N, D] of normalised crops [N, S, S, 3] in [-1, 1].

    Resized bilinearly (PyTorch-exact) when ``S`` differs from the recogniser's input size, and
    mapped linearly onto its input range when that is not [-1, 1].
    """
    if tuple(crops.shape[1:3]) != tuple(surrogate.input_size):
        crops = interpolate(crops, tuple(surrogate.input_size), mode="bilinear", align_corners=False)
    lo, hi = surrogate.input_range
    if (lo, hi) != (-1.0, 1.0):
        crops = lo + (hi - lo) * (crops + 1.0) / 2.0
    return surrogate.apply(params, crops)


def cloak_loss(surrogates: Sequence[Recogniser], loss: str, params, anchors: Anchors, image):
    """Σ over surrogates of the FaceCloak loss of one crop ``image`` [S, S, 3] (a batch of 1, as the code)."""
    total = jnp.float32(0.0)
    for s, p, far, near in zip(surrogates, params, anchors.far, anchors.near):
        total = total + surrogate_loss(loss, crop_embeddings(s, p, image[None]), far, near)[0]
    return total


def clip_ste(x, lo, hi):
    """``clip(x, lo, hi)`` in value, identity in gradient (straight-through)."""
    return x + lax.stop_gradient(jnp.clip(x, lo, hi) - x)


def applied_delta(perturbation, geometry: Geometry, config: FaceCloakConfig):
    """Corrected mode: the perturbation that will be applied, from ``n = attn·pert`` (straight-through clips)."""
    delta = clip_ste(perturbation, -config.eps, config.eps)
    if config.stickers:
        sm = config.sticker_max
        stickers = jnp.sum(geometry.masks * clip_ste(perturbation, -sm, sm)[None], axis=0)
        delta = delta + clip_ste(stickers, -sm, sm)
    if config.highpass:
        hm = config.highpass_max
        delta = delta + geometry.filter * clip_ste(perturbation, -hm, hm)
    return delta


def afog_initial_perturbation(uniform, config: FaceCloakConfig):
    """``2·max_pert·(U - 0.5)`` from a U[0, 1) draw [S, S, 3] (``afog_cloak_multi``'s ``torch.rand``)."""
    return jnp.float32(2 * config.eps) * (jnp.asarray(uniform, jnp.float32) - jnp.float32(0.5))


def afog_multi_step(surrogates, config: FaceCloakConfig, params, anchors: Anchors, state: AfogState, crop,
                    geometry: Geometry | None = None):
    """One update of ``afog_cloak_multi`` on one crop [S, S, 3]; returns ``(new state, loss)``."""
    surrogates = _as_tuple(surrogates)

    def objective(attn, pert):
        n = attn * pert
        if config.faithful:
            x = crop + n
        else:
            x = clip_ste(crop + applied_delta(n, geometry, config), -1.0, 1.0)
        return cloak_loss(surrogates, config.loss, params, anchors, x)

    loss, (g_attn, g_pert) = jax.value_and_grad(objective, argnums=(0, 1))(state.attn, state.pert)
    standardised = (g_attn - jnp.mean(g_attn)) / (jnp.std(g_attn, ddof=1) + config.attn_std_eps)
    attn = state.attn - config.attn_lr * standardised
    pert = state.pert - config.step * jnp.sign(g_pert)
    return AfogState(attn, pert), loss


def _afog_multi(surrogates, config, params, crops, anchors, pert0, geometry, valid):
    k = crops.shape[0]
    state0 = AfogState(jnp.ones_like(pert0), pert0)

    def body(state, index):
        new, loss = afog_multi_step(surrogates, config, params, anchors, state, crops[index], geometry)
        keep = valid[index]
        new = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, state)
        return new, loss

    order = jnp.tile(jnp.arange(k), config.epochs)
    state, losses = lax.scan(body, state0, order)
    n = state.attn * state.pert
    return AfogResult(jnp.clip(n, -config.eps, config.eps), n, state, losses)


@functools.partial(jax.jit, static_argnums=(0, 1))
def afog_cloak_multi(surrogates, config: FaceCloakConfig, params, crops, anchors: Anchors, pert0,
                     geometry: Geometry | None = None, valid=None) -> AfogResult:
    """``afog_cloak_multi`` for one identity (see the module docstring). Jitted; ``surrogates``, ``config`` static.

    ``crops`` [K, S, S, 3] in [-1, 1], the real probe LAST (as the code orders them); ``anchors``
    per surrogate; ``pert0`` [S, S, 3] from :func:`afog_initial_perturbation`; ``geometry`` needed
    in corrected mode; ``valid`` [K] bool marks padding crops to skip (default: all valid).
    """
    surrogates = _as_tuple(surrogates)
    valid = jnp.ones(crops.shape[0], bool) if valid is None else valid
    return _afog_multi(surrogates, config, tuple(params), crops, anchors, pert0, geometry, valid)


@functools.partial(jax.jit, static_argnums=(0, 1))
def afog_cloak_multi_batch(surrogates, config: FaceCloakConfig, params, crops, anchors: Anchors, pert0,
                           geometry: Geometry | None = None, valid=None) -> AfogResult:
    """:func:`afog_cloak_multi` for several identities at once (``vmap``; updates within one stay sequential).

    Every array gains a leading identity axis I: ``crops`` [I, K, S, S, 3], anchors [I, D_m],
    ``pert0`` [I, S, S, 3], ``geometry`` [I, ...], ``valid`` [I, K] (pad identities with fewer
    images and mark the padding invalid). ``params`` are shared.
    """
    surrogates = _as_tuple(surrogates)
    valid = jnp.ones(crops.shape[:2], bool) if valid is None else valid
    fn = functools.partial(_afog_multi, surrogates, config, tuple(params))
    return jax.vmap(fn)(crops, anchors, pert0, geometry, valid)


def cloak_parts(perturbation, geometry: Geometry, config: FaceCloakConfig) -> CloakParts:
    """Mask, stickers and high-pass part read from the final unclipped ``attn·pert`` [S, S, 3].

    The code re-extracts stickers and high-pass after every update from the current ``attn·pert``,
    so after the last update they are these functions of the final one. A part switched off in
    ``config`` is zeros.
    """
    n = perturbation
    mask = jnp.clip(n, -config.eps, config.eps)
    stickers = (extract_stickers(n, geometry.masks, config.sticker_max) if config.stickers
                else jnp.zeros((4,) + n.shape, n.dtype))
    highpass = (extract_highpass(n, geometry.filter, config.highpass_max) if config.highpass
                else jnp.zeros_like(n))
    return CloakParts(mask, stickers, highpass)


class PgdMultiState(NamedTuple):
    """``pgd_cloak_multi``'s state: ``pert`` [S, S, 3], ``stickers`` [4, S, S, 3], ``highpass`` [S, S, 3]."""

    pert: jax.Array
    stickers: jax.Array
    highpass: jax.Array


def pgd_multi_step(surrogates, config: FaceCloakConfig, params, anchors: Anchors, state: PgdMultiState, crop,
                   geometry: Geometry):
    """One update of ``pgd_cloak_multi`` on one crop; returns ``(new state, loss)``.

    ``x = crop (+ stickers, clamped ±σ_s) (+ high-pass part) + pert``; ``x ← x - step·sign(∇x)``;
    stickers and high-pass part are re-read from ``x - crop`` (which includes them), and
    ``pert = clip(x - crop, ±ε)``: here the stickers and high-pass part DO enter the loss.
    """
    surrogates = _as_tuple(surrogates)
    x = crop
    if config.stickers:
        x = apply_stickers_crop(x, state.stickers, config.sticker_max)
    if config.highpass:
        x = x + state.highpass
    x = x + state.pert
    loss, g = jax.value_and_grad(lambda im: cloak_loss(surrogates, config.loss, params, anchors, im))(x)
    moved = x - config.step * jnp.sign(g)
    d = moved - crop
    stickers = extract_stickers(d, geometry.masks, config.sticker_max) if config.stickers else state.stickers
    highpass = extract_highpass(d, geometry.filter, config.highpass_max) if config.highpass else state.highpass
    return PgdMultiState(jnp.clip(d, -config.eps, config.eps), stickers, highpass), loss


@functools.partial(jax.jit, static_argnums=(0, 1))
def pgd_cloak_multi(surrogates, config: FaceCloakConfig, params, crops, anchors: Anchors, state0: PgdMultiState,
                    geometry: Geometry):
    """``pgd_cloak_multi``: universal PGD over the crops, ``epochs`` passes, sequential per crop.

    ``state0``: ``pert = (2/255)·2·(U - 0.5)`` (the code starts at ±2/255 whatever ε), the
    initial stickers (:func:`~jaxprotect.methods.facecloak.stickers.init_stickers`) and high-pass
    part (:func:`~jaxprotect.methods.facecloak.highpass.initial_highpass`). Returns
    ``(final state, losses [epochs·K])``; the code's mask is the final ``pert``.
    """
    surrogates = _as_tuple(surrogates)
    params = tuple(params)

    def body(state, index):
        return pgd_multi_step(surrogates, config, params, anchors, state, crops[index], geometry)

    return lax.scan(body, state0, jnp.tile(jnp.arange(crops.shape[0]), config.epochs))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def pgd_cloak(surrogates, loss: str, iters: int, params, crop, anchors: Anchors, step: float, max_pert: float):
    """``pgd_cloak`` on one crop [S, S, 3]: ``x ← clip(orig + clip(x - step·sign(∇x) - orig, ±max), -1, 1)``.

    Returns the cloaked crop (after the code's final clip). (The code's ``pgd_cloak`` only has a
    loss when a perceptual loss is configured, as in the default template; that loss is then
    overwritten by the plain one, which is what runs here.)
    """
    surrogates = _as_tuple(surrogates)
    params = tuple(params)
    grad = jax.grad(lambda im: cloak_loss(surrogates, loss, params, anchors, im))

    def body(x, _):
        moved = x - step * jnp.sign(grad(x))
        return jnp.clip(crop + jnp.clip(moved - crop, -max_pert, max_pert), -1.0, 1.0), None

    x, _ = lax.scan(body, crop, None, length=iters)
    return jnp.clip(crop + jnp.clip(x - crop, -max_pert, max_pert), -1.0, 1.0)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def afog_cloak(surrogates, loss: str, iters: int, params, crop, anchors: Anchors, uniform, step: float,
               max_pert: float):
    """``afog_cloak`` on one crop [S, S, 3] (attention variant, single image).

    ``pert = 2·step·U - step`` from the draw ``uniform``; attention step 0.01 with the plain
    standardised gradient (zero when its std is 0, no +0.01 guard). Quirk kept: the cloaked image
    is rebuilt every iteration as ``clip(previous image + clip(attn·pert, ±max), -1, 1)``, so the
    perturbation accumulates across iterations (the final clip to ``±max`` around the original
    bounds it). The first iteration sees ``orig + attn·pert`` unclipped. Returns the cloaked crop.
    """
    surrogates = _as_tuple(surrogates)
    params = tuple(params)
    pert0 = jnp.float32(2 * step) * jnp.asarray(uniform, jnp.float32) - jnp.float32(step)

    def update(attn, pert, base, first):
        def objective(a, p):
            n = a * p
            x = jnp.where(first, crop + n, jnp.clip(base + jnp.clip(n, -max_pert, max_pert), -1.0, 1.0))
            return cloak_loss(surrogates, loss, params, anchors, x), x

        (_, x), (ga, gp) = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)(attn, pert)
        sd = jnp.std(ga, ddof=1)
        ga = jnp.where(sd == 0, 0.0, (ga - jnp.mean(ga)) / jnp.where(sd == 0, 1.0, sd))
        return attn - 0.01 * ga, pert - step * jnp.sign(gp), x

    def body(carry, i):
        attn, pert, base = carry
        attn, pert, x = update(attn, pert, base, i == 0)
        return (attn, pert, x), None

    (attn, pert, base), _ = lax.scan(body, (jnp.ones_like(pert0), pert0, crop), jnp.arange(iters))
    x = jnp.where(iters == 0, crop + pert0, jnp.clip(base + jnp.clip(attn * pert, -max_pert, max_pert), -1.0, 1.0))
    return jnp.clip(crop + jnp.clip(x - crop, -max_pert, max_pert), -1.0, 1.0)
