"""L∞ noise attacks on face recognisers: PGD, MI-FGSM and TI-DIM, dodging or impersonation.

Face crops are [N, H, W, 3] float32 in [0, 1] here (ε and step sizes in the same units, so
ε = 16/255 is 16 grey levels). The loss is a sum over surrogates of cosine similarities, each
recogniser seeing the crop resized to its own input size (:func:`jaxprotect.recognition.embed`):

- dodging: minimise ``Σ_m cos(f_m(x_adv), f_m(x))`` (push away from the photo's own identity);
- impersonation: minimise ``-Σ_m cos(f_m(x_adv), f_m(x_target))`` (pull towards the target).

Usual settings (:func:`default_config`), with ε = 16/255 for all three as in the PGD baseline
CLIP2Protect/AMT-GAN compare against (AMT-GAN issue #12) and in the MI-FGSM and TI-DIM papers:

- ``pgd`` (Madry et al. 2018): uniform random start in the ε-ball, 20 steps of
  α = 2.5·ε/T (Madry's rule: enough to cross the ball from any start), sign steps;
- ``mifgsm`` (Dong et al. 2018): T = 10, α = ε/T, momentum μ = 1.0 on gradients divided by their
  mean absolute value (the authors' TF code);
- ``tidim`` (Dong et al. 2019 + Xie et al. 2019): MI-FGSM whose gradient is taken through diverse
  inputs (with probability p = 0.5 the crop is shrunk to a random size in [0.9·S, S) with
  nearest-neighbour resizing and zero-padded back to S at a random place) and smoothed with a
  Gaussian kernel (7×7, σ = (7-1)/(2·3) = 1: the papers' 15×15 with nsig 3 on 299-px ImageNet
  images, scaled to 112-px faces), via ``dm_pix.gaussian_blur``.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import dm_pix
import jax
import jax.numpy as jnp

from jaxprotect.methods.noise.config import METHODS, NoiseConfig, default_config
from jaxprotect.recognition import Recogniser, cosine, embed

__all__ = [
    "METHODS",
    "NoiseConfig",
    "NoiseState",
    "default_config",
    "similarities",
    "attack_loss",
    "DiverseDraw",
    "draw_diverse",
    "diverse_inputs",
    "NoiseStepInfo",
    "random_start",
    "ti_smooth",
    "noise_step",
    "noise_attack",
]

def _as_tuple(surrogates):
    return (surrogates,) if isinstance(surrogates, Recogniser) else tuple(surrogates)


def similarities(surrogates, params, images, references):
    """Cosine similarity per surrogate [M, N] between ``images`` and ``references`` (both [N, H, W, 3] in [0, 1])."""
    surrogates = _as_tuple(surrogates)
    return jnp.stack(
        [cosine(embed(s, p, images, 1.0), embed(s, p, references, 1.0)) for s, p in zip(surrogates, params)]
    )


def attack_loss(surrogates, params, images, reference_feats, impersonate: bool):
    """The loss to MINIMISE: Σ over surrogates and photos of cos (dodging) or -cos (impersonation).

    ``images`` [N, H, W, 3] in [0, 1]; ``reference_feats`` per surrogate [N, D_m] (the clean
    photo's features when dodging, the target's when impersonating).
    """
    total = 0.0
    for s, p, ref in zip(surrogates, params, reference_feats):
        total = total + jnp.sum(cosine(embed(s, p, images, 1.0), ref))
    return -total if impersonate else total


def _shrink_and_pad(image, size, top, left):
    """Nearest-resize [S, S', 3] to ``size`` x ``size`` placed at (top, left) on a zero canvas (static shape)."""
    height, width = image.shape[0], image.shape[1]
    rows = jnp.arange(height)
    cols = jnp.arange(width)
    src_r = jnp.floor((rows - top) * (height / size)).astype(jnp.int32)
    src_c = jnp.floor((cols - left) * (width / size)).astype(jnp.int32)
    inside_r = (rows >= top) & (rows < top + size)
    inside_c = (cols >= left) & (cols < left + size)
    gathered = image[jnp.clip(src_r, 0, height - 1)][:, jnp.clip(src_c, 0, width - 1)]
    mask = (inside_r[:, None] & inside_c[None, :])[..., None]
    return jnp.where(mask, gathered, 0.0)


class DiverseDraw(NamedTuple):
    """One iteration's DI draws per photo: ``apply`` [N] bool, ``size`` [N] new side, ``top``/``left`` [N] offsets."""

    apply: jax.Array
    size: jax.Array
    top: jax.Array
    left: jax.Array


def draw_diverse(key, n: int, side: int, prob: float = 0.5, resize_min: float = 0.9) -> DiverseDraw:
    """DI's random numbers for ``n`` square crops of ``side`` px: with probability ``prob`` a photo
    is shrunk to a side uniform in ``[floor(resize_min·side), side)`` placed uniformly at random."""
    lo = int(resize_min * side)
    k_apply, k_size, k_top, k_left = jax.random.split(key, 4)
    apply = jax.random.uniform(k_apply, (n,)) < prob
    size = jax.random.randint(k_size, (n,), lo, side)
    top = jnp.floor(jax.random.uniform(k_top, (n,)) * (side - size + 1)).astype(jnp.int32)
    left = jnp.floor(jax.random.uniform(k_left, (n,)) * (side - size + 1)).astype(jnp.int32)
    return DiverseDraw(apply, size, top, left)


def diverse_inputs(images, draw: DiverseDraw):
    """DI (Xie et al. 2019): photos with ``draw.apply`` are shrunk (nearest) to ``draw.size`` and
    zero-padded back at (``draw.top``, ``draw.left``). ``images`` [N, H, W, 3]; same shape out."""
    shrunk = jax.vmap(_shrink_and_pad)(images, draw.size, draw.top, draw.left)
    return jnp.where(draw.apply[:, None, None, None], shrunk, images)


def ti_smooth(grad, kernel_size: int = 7, nsig: float = 3.0):
    """TI: convolve each channel of ``grad`` [N, H, W, C] with TI's Gaussian kernel (zero padding).

    TI-DIM's kernel is ``norm.pdf(linspace(-nsig, nsig, k))`` (outer product, normalised), i.e. a
    Gaussian of σ = (k-1)/(2·nsig) pixels sampled at the integers: ``dm_pix.gaussian_blur``'s kernel.
    """
    return dm_pix.gaussian_blur(grad, (kernel_size - 1) / (2.0 * nsig), kernel_size)


class NoiseState(NamedTuple):
    """The iterate ``images`` [N, H, W, 3] in [0, 1] and the momentum ``grad_sum`` (same shape)."""

    images: jax.Array
    grad_sum: jax.Array


class NoiseStepInfo(NamedTuple):
    """What one iteration did: ``loss`` (scalar, before the step), ``grad`` [N, H, W, 3] the direction
    whose sign was applied (after TI smoothing and momentum), ``update`` the change of the images."""

    loss: jax.Array
    grad: jax.Array
    update: jax.Array


def noise_step(surrogates, config: NoiseConfig, impersonate: bool, params, state, clean, reference_feats, key,
               draw: DiverseDraw | None = None):
    """One iteration of ``config.method`` (pure). Images in [0, 1]; ``key`` draws TI-DIM's diverse
    inputs unless ``draw`` gives them (:func:`draw_diverse`). Returns (:class:`NoiseState`, :class:`NoiseStepInfo`)."""
    surrogates = _as_tuple(surrogates)
    if config.method == "tidim" and draw is None:
        draw = draw_diverse(key, clean.shape[0], clean.shape[1], config.diversity_prob, config.resize_min)

    def loss_fn(images):
        if config.method == "tidim":
            images = diverse_inputs(images, draw)
        return attack_loss(surrogates, params, images, reference_feats, impersonate)

    loss, grad = jax.value_and_grad(loss_fn)(state.images)
    if config.method == "tidim":
        grad = ti_smooth(grad, config.kernel_size, config.nsig)
    if config.method == "pgd":
        grad_sum = grad
    else:
        grad = grad / jnp.maximum(jnp.mean(jnp.abs(grad), axis=(1, 2, 3), keepdims=True), 1e-12)
        grad_sum = config.momentum * state.grad_sum + grad
    images = state.images - config.alpha * jnp.sign(grad_sum)
    images = jnp.clip(jnp.clip(images, clean - config.eps, clean + config.eps), 0.0, 1.0)
    return NoiseState(images, grad_sum), NoiseStepInfo(loss, grad_sum, images - state.images)


@functools.lru_cache(maxsize=32)
def _jitted_step(surrogates: tuple, config: NoiseConfig, impersonate: bool):
    return jax.jit(functools.partial(noise_step, surrogates, config, impersonate))


def random_start(key, clean, eps: float):
    """PGD's start: ``clean`` + U(-eps, eps) noise, clipped to [0, 1] (same shape as ``clean``)."""
    noise = jax.random.uniform(key, clean.shape, minval=-eps, maxval=eps)
    return jnp.clip(clean + noise, 0.0, 1.0)


def noise_attack(
    surrogates,
    params,
    images,
    key,
    config: NoiseConfig,
    target_images=None,
    progress=None,
    *,
    start=None,
    draws=None,
):
    """Run a noise attack; returns protected crops [N, H, W, 3] float32 in [0, 1] within ε of ``images``.

    ``surrogates`` a :class:`Recogniser` or a sequence, ``params`` the matching params (a sequence,
    or one pytree for one surrogate); ``images`` face crops [N, H, W, 3] in [0, 1]. Without
    ``target_images`` the attack dodges; with them ([N, H, W, 3] in [0, 1], or [1, ...] shared)
    it impersonates. ``key`` drives PGD's random start and TI-DIM's diverse inputs, unless they
    are given: ``start`` the first iterate [N, H, W, 3] (PGD: :func:`random_start`), ``draws``
    one :class:`DiverseDraw` per iteration (TI-DIM). ``progress`` is called with the iteration
    number after each step.
    """
    single = isinstance(surrogates, Recogniser)
    surrogates = _as_tuple(surrogates)
    params = (params,) if single else tuple(params)
    clean = jnp.asarray(images, jnp.float32)
    impersonate = target_images is not None
    references = clean if not impersonate else jnp.broadcast_to(jnp.asarray(target_images, jnp.float32), clean.shape)
    reference_feats = tuple(embed(s, p, references, 1.0) for s, p in zip(surrogates, params))
    k_start, k_steps = jax.random.split(key)
    if start is None:
        start = random_start(k_start, clean, config.eps) if config.random_start else clean
    if draws is not None and len(draws) != config.steps:
        raise ValueError(f"draws has {len(draws)} entries for {config.steps} steps")
    state = NoiseState(jnp.asarray(start, jnp.float32), jnp.zeros_like(clean))
    step = _jitted_step(surrogates, config, impersonate)
    for i, k in enumerate(jax.random.split(k_steps, config.steps)):
        state, _ = step(params, state, clean, reference_feats, k, None if draws is None else draws[i])
        if progress is not None:
            state.images.block_until_ready()
            progress(i)
    return state.images
