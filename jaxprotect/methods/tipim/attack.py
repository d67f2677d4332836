"""TIP-IM (Yang et al., ICCV 2021) as the official code (ShawnXYang/TIP-IM ``run.py``) runs it.

Everything is on TIP-IM's pixel scale: face crops [N, H, W, 3] float32 in [0, 255], ε = 12,
T = 100 iterations, α = 1.5·ε/T. Recognisers take [-1, 1]: :func:`jaxprotect.recognition.embed` maps
[0, 255] onto each recogniser's input range (and resizes to its input size) inside the
differentiated function, so gradients are taken with respect to the 0–255 pixels, as upstream.

One iteration, per photo (photos are batched with ``vmap``):

1. input diversity on the current image (random affine + rotation, :mod:`input_diversity`);
2. for EVERY target j: ``loss_j = mean((f_adv - f_tj)²) - mean((f_adv - f_x)²) + γ·MMD(x_adv, x)``
   (features L2-normalised as ``FaceModel.forward``), gradient normalised by its mean absolute
   value, momentum ``g_j = μ·g + ∇_j``, step (L2-normalised ``α·sqrt(H·W·3)·g/‖g‖`` by default,
   ``α·sign(g)`` with ``norm="linf"``), projection onto ``[max(x-ε, 0), min(x+ε, 255)]``. The
   targets are ONE ``vmap`` over ``grad``: the forward pass does not depend on the target, so it
   runs once and only the backward pass is batched over targets;
3. greedy selection (``submodular``): embed all candidates without diversity and keep the one
   with the largest gain (Gain3 by default), together with its momentum.

Where this differs from upstream: upstream's ``submodular`` only works with ``--batch_size 1``
(it indexes a per-target array with candidates of the whole batch); here each photo selects its
own candidate, which equals upstream at batch size 1. For the same reason the MMD term compares
each photo with its own clean image (upstream's batch of 1). Several surrogates (an ensemble,
not in upstream) add their losses and their gains. A zero gradient would make upstream divide by
zero; here the normalisers have a 1e-12 floor. The random draws come from an explicit key.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jaxprotect.methods.tipim.config import TipimConfig
from jaxprotect.methods.tipim.input_diversity import DiversityDraw, input_diversity, sample_diversity
from jaxprotect.methods.tipim.mmd import image_mmd
from jaxprotect.recognition import Recogniser, embed, l2_normalize

__all__ = [
    "TipimConfig",
    "TipimState",
    "TipimStepInfo",
    "draw_step",
    "TipimResult",
    "GAINS",
    "gain1",
    "gain2",
    "gain3",
    "features",
    "target_features",
    "select_candidate",
    "target_candidates",
    "target_candidate",
    "tipim_init",
    "tipim_step",
    "tipim_run",
    "tipim_attack",
]


class TipimState(NamedTuple):
    """The iterate: ``images`` [N, H, W, 3] in [0, 255] and the momentum ``grad_sum`` (same shape)."""

    images: jax.Array
    grad_sum: jax.Array


class TipimResult(NamedTuple):
    """``images`` [N, H, W, 3] in [0, 255]; ``chosen`` [steps, N] target index kept at each step;
    ``losses`` [steps, N] that target's loss; ``gains`` [steps, N] its gain."""

    images: jax.Array
    chosen: jax.Array
    losses: jax.Array
    gains: jax.Array


def _distance(a, b):
    """``run.py`` ``L2distance``: Euclidean distance along the last axis."""
    return jnp.sqrt(jnp.sum((a - b) ** 2, axis=-1))


def gain1(adv_feat, init_feat, target_feats):
    """``log(1 + Σ_j exp(d(f', f_x) - d(f', f_tj)))``; adv/init [D], targets [T, D]."""
    return jnp.log1p(jnp.sum(jnp.exp(_distance(adv_feat, init_feat) - _distance(adv_feat, target_feats))))


def gain2(adv_feat, init_feat, target_feats):
    """``log(1 + min_j exp(d(f', f_x) - d(f', f_tj)))``."""
    return jnp.log1p(jnp.min(jnp.exp(_distance(adv_feat, init_feat) - _distance(adv_feat, target_feats))))


def gain3(adv_feat, init_feat, target_feats):
    """``log(1 + max_j exp(d(f', f_x) - d(f', f_tj)))`` (TIP-IM's default)."""
    return jnp.log1p(jnp.max(jnp.exp(_distance(adv_feat, init_feat) - _distance(adv_feat, target_feats))))


GAINS: dict[str, Callable] = {"gain1": gain1, "gain2": gain2, "gain3": gain3}


def _as_tuple(surrogates):
    return (surrogates,) if isinstance(surrogates, Recogniser) else tuple(surrogates)


def features(surrogates: Sequence[Recogniser], params, images):
    """L2-normalised embeddings, one [N, D_m] array per surrogate, of ``images`` [N, H, W, 3] in [0, 255]."""
    return tuple(l2_normalize(embed(s, p, images, 255.0)) for s, p in zip(surrogates, params))


def target_features(surrogates, params, target_images):
    """Target identities' features (tuple over surrogates of [T, D_m]) from aligned crops [T, H, W, 3] in [0, 255]."""
    surrogates = _as_tuple(surrogates)
    return features(surrogates, tuple(params), jnp.asarray(target_images, jnp.float32))


def _total_gain(gain, cand_feats, init_feats, target_feats):
    """Gain of one candidate, summed over surrogates; features are per-surrogate [D_m] / [T, D_m]."""
    return sum(gain(c, i, t) for c, i, t in zip(cand_feats, init_feats, target_feats))


def select_candidate(cand_feats, init_feats, target_feats, gain: str = "gain3"):
    """``submodular``: the index of the candidate with the largest gain, and all gains.

    ``cand_feats`` per surrogate [K, D_m] (one candidate image each), ``init_feats`` [D_m] (clean
    photo), ``target_feats`` [T, D_m]. Every candidate is scored against ALL targets (upstream
    ignores its ``idx`` argument). Returns (index, gains [K]).
    """
    gain_fn = GAINS[gain]
    gains = jax.vmap(lambda *c: _total_gain(gain_fn, c, init_feats, target_feats))(*cand_feats)
    return jnp.argmax(gains), gains


def _update(config: TipimConfig, image, grad_sum, grad, lo, hi):
    """Normalise the gradient, add momentum, step, project. image/grad [H, W, 3]."""
    grad = grad / jnp.maximum(jnp.mean(jnp.abs(grad)), 1e-12)
    new_sum = config.momentum * grad_sum + grad
    if config.norm == "linf":
        step = -config.alpha * jnp.sign(new_sum)
    else:
        factor = jnp.sqrt(jnp.float32(grad.size))  # sqrt(H*W*3), run.py `np.sqrt(np.prod(img_shape) * 3)`
        norm = jnp.maximum(jnp.linalg.norm(new_sum.ravel()), 1e-12)
        step = -config.alpha * factor * new_sum / norm
    return jnp.clip(image + step, lo, hi), new_sum


def _target_loss(surrogates, config, params, image, clean, init_feats, target, draw):
    """``loss_t - loss_i + γ·MMD`` for ONE target (per surrogate [D_m]) on one image [H, W, 3]."""
    batch = image[None]
    if config.diversity:
        batch = input_diversity(batch, DiversityDraw(draw.affine[None], draw.angle[None]))
    adv_feats = features(surrogates, params, batch)
    loss = 0.0
    for fa, fi, ft in zip(adv_feats, init_feats, target):
        loss = loss + jnp.mean((fa[0] - ft) ** 2) - jnp.mean((fa[0] - fi) ** 2)
    if config.gamma:
        loss = loss + config.gamma * image_mmd(image, clean)
    return loss


def target_candidate(surrogates, config, params, image, grad_sum, clean, init_feats, target, draw):
    """The candidate step towards ONE target: (loss, candidate image, candidate momentum).

    ``image``/``grad_sum``/``clean`` [H, W, 3] in [0, 255]; ``init_feats`` per surrogate [D_m];
    ``target`` per surrogate [D_m]; ``draw`` this photo's :class:`DiversityDraw` (affine [2, 3], angle []).
    """
    loss, grad = jax.value_and_grad(_target_loss, argnums=3)(
        surrogates, config, params, image, clean, init_feats, target, draw
    )
    lo = jnp.maximum(clean - config.eps, 0.0)
    hi = jnp.minimum(clean + config.eps, 255.0)
    cand, new_sum = _update(config, image, grad_sum, grad, lo, hi)
    return loss, cand, new_sum


def target_candidates(surrogates, config, params, image, grad_sum, clean, init_feats, target_feats, draw):
    """:func:`target_candidate` for every target in ONE ``vmap``: (losses [T], candidates [T, H, W, 3], momenta)."""
    one = functools.partial(target_candidate, surrogates, config, params, image, grad_sum, clean, init_feats)
    return jax.vmap(lambda tgt: one(tgt, draw))(target_feats)


def _photo_step(surrogates, config, params, image, grad_sum, clean, init_feats, target_feats, draw):
    losses, cands, sums = target_candidates(
        surrogates, config, params, image, grad_sum, clean, init_feats, target_feats, draw
    )
    cand_feats = features(surrogates, params, cands)
    best, gains = select_candidate(cand_feats, init_feats, target_feats, config.gain)
    return cands[best], sums[best], best, losses[best], gains[best]


def tipim_init(images) -> TipimState:
    """Initial state: the clean crops [N, H, W, 3] in [0, 255] and a zero momentum."""
    images = jnp.asarray(images, jnp.float32)
    return TipimState(images, jnp.zeros_like(images))


class TipimStepInfo(NamedTuple):
    """What one iteration did, per photo: ``chosen`` [N] target index kept, ``loss`` [N] that
    target's loss, ``gain`` [N] its gain, ``update`` [N, H, W, 3] the change applied to the image
    (after projection), ``draw`` the :class:`DiversityDraw` used."""

    chosen: jax.Array
    loss: jax.Array
    gain: jax.Array
    update: jax.Array
    draw: DiversityDraw


def draw_step(key, n: int, config: TipimConfig) -> DiversityDraw:
    """The input-diversity draw of one iteration for ``n`` photos, as :func:`tipim_step` makes it
    from ``key`` (identity warps when ``config.diversity`` is off)."""
    if config.diversity:
        return sample_diversity(key, n, config.std_range)
    return DiversityDraw(jnp.zeros((n, 2, 3), jnp.float32), jnp.zeros((n,), jnp.float32))


def tipim_step(surrogates, config: TipimConfig, params, state: TipimState, clean, init_feats, target_feats, key,
               draw: DiversityDraw | None = None):
    """One TIP-IM iteration for a batch of photos (pure).

    ``clean`` [N, H, W, 3] in [0, 255]; ``init_feats`` per surrogate [N, D_m]; ``target_feats``
    per surrogate [T, D_m] (shared by the photos); ``key`` this iteration's PRNG key, used only
    when ``draw`` (the input-diversity warps, see :func:`draw_step`) is not given. Returns
    (new state, :class:`TipimStepInfo`).
    """
    surrogates = _as_tuple(surrogates)
    if draw is None:
        draw = draw_step(key, clean.shape[0], config)
    per_photo = functools.partial(_photo_step, surrogates, config, params)
    images, sums, best, loss, gain = jax.vmap(per_photo, in_axes=(0, 0, 0, 0, None, 0))(
        state.images, state.grad_sum, clean, init_feats, target_feats, draw
    )
    return TipimState(images, sums), TipimStepInfo(best, loss, gain, images - state.images, draw)


@functools.lru_cache(maxsize=16)
def _jitted_step(surrogates: tuple, config: TipimConfig):
    return jax.jit(functools.partial(tipim_step, surrogates, config))


@functools.lru_cache(maxsize=16)
def _jitted_features(surrogates: tuple):
    return jax.jit(functools.partial(features, surrogates))


def tipim_run(surrogates, params, images, target_feats, key, config: TipimConfig = TipimConfig(), progress=None,
              draws: Sequence[DiversityDraw] | None = None):
    """Run TIP-IM and keep its trace. Returns :class:`TipimResult`.

    ``surrogates`` a :class:`Recogniser` or a sequence; ``params`` the matching params (a
    sequence, or one pytree for one surrogate); ``images`` aligned face crops [N, H, W, 3]
    float32 in [0, 255]; ``target_feats`` from :func:`target_features` (per surrogate [T, D_m];
    a bare [T, D] array for one surrogate); ``key`` a PRNG key (one split per iteration);
    ``draws``: optional per-iteration :class:`DiversityDraw` (replaces the key's draws, e.g. to
    replay recorded ones); ``progress`` an optional callable called with the iteration number.
    """
    single = isinstance(surrogates, Recogniser)
    surrogates = _as_tuple(surrogates)
    params = (params,) if single else tuple(params)
    if not isinstance(target_feats, (tuple, list)):
        target_feats = (target_feats,)
    target_feats = tuple(jnp.asarray(t, jnp.float32) for t in target_feats)
    clean = jnp.asarray(images, jnp.float32)
    init_feats = _jitted_features(surrogates)(params, clean)
    step = _jitted_step(surrogates, config)
    state = tipim_init(clean)
    if draws is not None and len(draws) != config.steps:
        raise ValueError(f"draws has {len(draws)} entries for {config.steps} steps")
    chosen, losses, gains = [], [], []
    for i, k in enumerate(jax.random.split(key, config.steps)):
        state, info = step(params, state, clean, init_feats, target_feats, k, None if draws is None else draws[i])
        chosen.append(info.chosen)
        losses.append(info.loss)
        gains.append(info.gain)
        if progress is not None:
            state.images.block_until_ready()  # so a progress bar shows real progress
            progress(i)
    return TipimResult(state.images, jnp.stack(chosen), jnp.stack(losses), jnp.stack(gains))


def tipim_attack(surrogates, params, images, target_feats, key, config: TipimConfig = TipimConfig(), progress=None):
    """Protected crops [N, H, W, 3] float32 in [0, 255] (within ε of ``images``); see :func:`tipim_run`."""
    return tipim_run(surrogates, params, images, target_feats, key, config, progress).images
