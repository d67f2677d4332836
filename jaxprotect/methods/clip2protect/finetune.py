"""Stage 1 of CLIP2Protect: generator fine-tuning around the e4e code (``pivot_tuning.py``).

Per photo, upstream draws fresh N(0, 1) noise maps (``G.make_noise()`` + ``normal_()``, fixed
during tuning and reused by stage 2) and runs 150 steps of

    img  = F.interpolate(G(w, noise), size=256)          # default mode: NEAREST
    real = F.interpolate(photo, size=256)
    loss = LPIPS_vgg(img, real).sum() + 0.1 * MSE(img, real)
    Adam(G.parameters(), lr=5e-4).step()

over ALL generator weights. Upstream builds the generator and its Adam once
(``PivotTuning.__init__``) and never resets them, so photo k starts from the generator (and Adam
moments and step count) left by photos 0..k-1: ``FinetuneConfig.sequential_generator=True``
reproduces that by running the photos one at a time in order, carrying the state. By default every
photo tunes its own copy of the pretrained weights, and a batch of photos tunes together (the loss of the
batch is the sum of the photos' losses, so each photo's gradient is its own).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxprotect.methods.clip2protect.config import ExecutionConfig, FinetuneConfig
from jaxprotect.methods.clip2protect.generator import Synthesis
from jaxprotect.ops.resize import interpolate

__all__ = ["FinetuneState", "FinetuneTarget", "finetune_optimizer", "draw_noise", "resize_for_loss", "init_finetune",
           "make_finetune_step", "finetune_target", "broadcast_params", "loss_stride", "FINETUNE_MODCONV"]


class FinetuneState(NamedTuple):
    """Generator params being tuned (leading photo axis B on every leaf) and their Adam state."""

    params: Any
    opt_state: Any


def finetune_optimizer(cfg: FinetuneConfig) -> optax.GradientTransformation:
    """``optim.Adam(G.parameters(), lr=5e-4)``: betas (0.9, 0.999), eps 1e-8, no weight decay."""
    return optax.adam(cfg.lr, b1=cfg.betas[0], b2=cfg.betas[1], eps=cfg.eps)


def draw_noise(key, synthesis: Synthesis) -> list:
    """Fresh N(0, 1) noise maps for one photo, float32, shapes ``synthesis.noise_shapes``
    (upstream ``make_noises``: new draws per photo; the checkpoint's noise buffers are not used)."""
    keys = jax.random.split(key, len(synthesis.noise_shapes))
    return [jax.random.normal(k, s, jnp.float32) for k, s in zip(keys, synthesis.noise_shapes)]


def resize_for_loss(images, cfg: FinetuneConfig):
    """``F.interpolate(images, size=cfg.size)`` in ``cfg.resize`` mode (upstream: nearest,
    PyTorch's legacy index rule): [N, H, W, 3] -> [N, s, s, 3], values untouched."""
    if images.shape[1] == cfg.size and images.shape[2] == cfg.size:
        return images
    return interpolate(images, cfg.size, mode=cfg.resize, align_corners=False)


def loss_stride(size: int, cfg: FinetuneConfig) -> int:
    """s when the loss resize keeps exactly the generator pixels (s*i, s*j), else 1.

    PyTorch's legacy nearest rule reads source index floor(i * size / cfg.size): for an
    integer ratio s that is s*i, so the loss only sees every s-th row and column and the last
    generator block need not compute the others (``cfg.strided``)."""
    if cfg.strided and cfg.resize == "nearest" and size % cfg.size == 0:
        return size // cfg.size
    return 1


def broadcast_params(params, batch: int):
    """B independent copies of ``params`` (leading axis B), each tuned on its own photo."""
    return jax.tree.map(lambda p: jnp.broadcast_to(p, (batch,) + p.shape).copy(), params)


def init_finetune(params_batched, cfg: FinetuneConfig) -> FinetuneState:
    """Fine-tuning state for per-photo params (leading axis B): one fresh Adam per photo (moments
    and step count carry the photo axis too)."""
    return FinetuneState(params_batched, jax.vmap(finetune_optimizer(cfg).init)(params_batched))


class FinetuneTarget(NamedTuple):
    """The photo as the tuning loss compares with it: ``image`` [B, s, s, 3] in [-1, 1] (resized by
    :func:`resize_for_loss`) and ``lpips``, LPIPS' features of it (computed once, not every step)."""

    image: Any
    lpips: Any


def finetune_target(real, lpips_features: Callable, lpips_params) -> FinetuneTarget:
    """:class:`FinetuneTarget` of ``real`` [B, s, s, 3] in [-1, 1]; ``lpips_features(params, images)``
    is e.g. :meth:`jaxprotect.models.lpips.LPIPS.features` (whose result ``lpips_apply`` accepts as b).
    The photo is constant during tuning, so its LPIPS trunk pass need not be repeated every step."""
    return FinetuneTarget(real, jax.jit(lpips_features)(lpips_params, real))


# The weights are differentiated: modulating the (small) kernels, as upstream's grouped convolution
# does, needs fewer full-size passes than scaling the activations (the generator's default, the
# cheaper one when only W+ and noise are differentiated).
FINETUNE_MODCONV = "weight"


def make_finetune_step(synthesis: Synthesis, lpips_apply: Callable, cfg: FinetuneConfig, ex: ExecutionConfig):
    """``step(state, w [B, L, 512], noise, real, lpips_params) -> (state, loss [B])``.

    ``real`` is the photo [B, s, s, 3] in [-1, 1] already resized by :func:`resize_for_loss`
    (upstream resizes it every step; the result does not change), or a :class:`FinetuneTarget`
    holding it with its LPIPS features (same loss, less work per step). ``lpips_apply(params, a, b)
    -> [N]`` is LPIPS-VGG on [-1, 1] images. The returned loss is the forward's (before the
    update), per photo.
    """
    opt = finetune_optimizer(cfg)
    stride = loss_stride(synthesis.size, cfg)

    def batch_loss(params, w, noise, real, lpips_params):
        raw = synthesis.images(params, w, noise, per_photo_params=True, batching=ex.generator_batching,
                               remat=ex.remat, output_stride=stride, modconv=FINETUNE_MODCONV)
        img = resize_for_loss(raw, cfg)
        real, real_lpips = (real.image, real.lpips) if isinstance(real, FinetuneTarget) else (real, real)
        percept = lpips_apply(lpips_params, img, real_lpips)
        mse = jnp.mean((img - real) ** 2, axis=(1, 2, 3))
        losses = percept + cfg.mse_weight * mse
        return jnp.sum(losses), losses

    def step(state: FinetuneState, w, noise, real, lpips_params):
        (_, losses), grads = jax.value_and_grad(batch_loss, has_aux=True)(state.params, w, noise, real, lpips_params)
        updates, opt_state = jax.vmap(opt.update)(grads, state.opt_state, state.params)
        return FinetuneState(optax.apply_updates(state.params, updates), opt_state), losses

    return step
