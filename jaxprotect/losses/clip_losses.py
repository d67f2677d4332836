"""Clip2Protect's CLIP losses with the text side computed once per prompt pair.

Upstream (fahadshamshad/Clip2Protect ``criteria/nce_loss.py`` + ``criteria/infonce.py``) re-encodes
4 x 79 constant prompts at every step; here :func:`precompute_text_features` encodes the 2 x 79
templated prompts once and returns a small pytree (:class:`ClipTextFeatures`) that the pure,
jit/vmap/grad-able losses take as an argument:

* :func:`nce_loss` — the loss Clip2Protect actually optimises: InfoNCE (temperature 0.1, mean over
  2B rows) with query ``normalize(I_t - I_s)``, positives ``text direction`` and
  ``normalize(mean_T(T_target) - I_s)``, and the 79 negatives ``normalize(T_source - I_s[0])``.
* :func:`directional_loss` — the paper's eq. 2, ``1 - cos(ΔI, ΔT)`` (mean over the batch), with ΔT the
  template-averaged text direction (the same one the NCE loss uses as its first positive).

Undefined directions: when the target image equals the source image, ``I_t - I_s`` is 0 and
upstream's ``query / |query|`` is 0/0 = NaN. Every normalisation here is :func:`safe_normalize`:
a vector whose norm is at most ``eps`` becomes the zero vector with ZERO gradient (double-``where``),
so the loss stays finite (NCE: ``log(1 + 79)`` = 4.382 with ``q = 0``; directional: 1) and the
CLIP term contributes no gradient until the images differ by more than ``eps`` in CLIP space.
The default ``eps = 1e-5`` lies between float32 noise (two encodings of the same 1024² image in
batches of different size differ by ~5e-7 in unit-feature space) and the smallest real edit
(a 1/255 brightness change moves the unit feature by ~4e-3; pixel noise of std 1e-4, by ~6e-5).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxprotect.losses.preprocess import clip_preprocess
from jaxprotect.models.clip import image_apply, shapes_of_params
from jaxprotect.text.templates import IMAGENET_TEMPLATES, compose

__all__ = [
    "ClipTextFeatures",
    "precompute_text_features",
    "text_features_from_embeddings",
    "safe_normalize",
    "clip_image_features",
    "info_nce",
    "nce_loss_from_features",
    "nce_loss",
    "directional_loss_from_features",
    "directional_loss",
    "DEFAULT_EPS",
]

DEFAULT_EPS = 1e-5
TEMPERATURE = 0.1


class ClipTextFeatures(NamedTuple):
    """The constant text side of the CLIP losses (a pytree; pass it into jitted functions).

    ``source``/``target`` [T, D]: L2-normalised CLIP features of every template filled with the
    source / target text (T = 79 for Clip2Protect); ``direction`` [1, D]:
    ``normalize(mean_T(target - source))`` (upstream ``compute_text_direction``).
    """

    source: jax.Array
    target: jax.Array
    direction: jax.Array


def safe_normalize(x, eps: float = DEFAULT_EPS, axis: int = -1):
    """``x / |x|`` along ``axis``; rows with ``|x| <= eps`` become 0 with zero gradient (no NaN)."""
    sq = jnp.sum(x * x, axis=axis, keepdims=True)
    ok = sq > eps * eps
    norm = jnp.sqrt(jnp.where(ok, sq, 1.0))
    return jnp.where(ok, x / norm, 0.0)


def text_features_from_embeddings(source_embeddings, target_embeddings) -> ClipTextFeatures:
    """Build :class:`ClipTextFeatures` from raw ``encode_text`` outputs [T, D] of the templated
    source and target prompts (same template order). Pure."""
    src = safe_normalize(jnp.asarray(source_embeddings, jnp.float32))
    tgt = safe_normalize(jnp.asarray(target_embeddings, jnp.float32))
    return ClipTextFeatures(src, tgt, safe_normalize(jnp.mean(tgt - src, axis=0, keepdims=True)))


def precompute_text_features(
    clip, source_text: str = "face", target_text: str = "red lipstick", templates=IMAGENET_TEMPLATES
) -> ClipTextFeatures:
    """Encode the templated prompts once: ``clip`` = a loaded :class:`jaxprotect.models.clip.CLIP`.

    Returns :class:`ClipTextFeatures` with ``source``/``target`` [len(templates), D] and ``direction``
    [1, D]. Clip2Protect's defaults: source "face", target "red lipstick", the 79 ImageNet templates.
    """
    texts = compose(source_text, templates) + compose(target_text, templates)
    emb = clip.encode_text(clip.tokenize(texts))
    n = len(templates)
    return text_features_from_embeddings(emb[:n], emb[n:])


def clip_image_features(clip_params, images_01, preprocess: str = "faithful", eps: float = DEFAULT_EPS):
    """L2-normalised CLIP image features [N, D] of images [N, H, W, 3] NHWC float32 in [0, 1]
    (any size; resized/cropped to the network's input by :func:`clip_preprocess`). Pure."""
    size = shapes_of_params(clip_params).image_resolution
    x = clip_preprocess(images_01, mode=preprocess, size=size)
    return safe_normalize(image_apply(clip_params, x), eps)


def info_nce(query, positive_key, negative_keys, temperature: float = TEMPERATURE, eps: float = DEFAULT_EPS):
    """``criteria/infonce.py`` ``info_nce`` (unpaired negatives, mean reduction): query/positive
    [M, D], negatives [K, D] -> scalar. Inputs are re-normalised as upstream does (F.normalize)."""
    q, p, n = (safe_normalize(v, eps) for v in (query, positive_key, negative_keys))
    logits = jnp.concatenate([jnp.sum(q * p, axis=1, keepdims=True), q @ n.T], axis=1) / temperature
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[:, 0])


def nce_loss_from_features(
    text_feats: ClipTextFeatures, source_features, target_features,
    temperature: float = TEMPERATURE, eps: float = DEFAULT_EPS,
):
    """Clip2Protect ``NCELoss.infonce_loss`` on L2-normalised image features: source [1 or B, D],
    target [B, D] -> scalar (mean over the 2B InfoNCE rows). Pure."""
    i_s, i_t = source_features, target_features
    b = i_t.shape[0]
    query = safe_normalize(i_t - i_s, eps)  # [B, D]
    pos1 = jnp.broadcast_to(text_feats.direction, (b, i_t.shape[1]))
    pos2 = jnp.broadcast_to(safe_normalize(jnp.mean(text_feats.target, axis=0, keepdims=True) - i_s, eps), query.shape)
    neg = safe_normalize(text_feats.source - i_s[:1], eps)  # upstream uses the first source row only
    return info_nce(jnp.concatenate([query, query]), jnp.concatenate([pos1, pos2]), neg, temperature, eps)


def nce_loss(
    clip_params, text_feats: ClipTextFeatures, source_image_01, target_image_01,
    preprocess: str = "faithful", temperature: float = TEMPERATURE, eps: float = DEFAULT_EPS,
):
    """Clip2Protect's CLIP loss ``NCELoss(source, "face", target, "red lipstick")`` as a pure function.

    ``clip_params``: :attr:`CLIP.params`; ``text_feats``: from :func:`precompute_text_features`;
    images [N, H, W, 3] NHWC float32 in [0, 1] (source: 1 or B images, the un-edited reference;
    target: B images, the edited / augmented ones). ``preprocess``: ``"faithful"`` (upstream's double
    un-normalisation) or ``"correct"``. Returns a scalar; usable under jit / vmap / grad.
    """
    i_s = clip_image_features(clip_params, source_image_01, preprocess, eps)
    i_t = clip_image_features(clip_params, target_image_01, preprocess, eps)
    return nce_loss_from_features(text_feats, i_s, i_t, temperature, eps)


def directional_loss_from_features(text_feats: ClipTextFeatures, source_features, target_features,
                                   eps: float = DEFAULT_EPS):
    """Paper eq. 2 on L2-normalised image features: mean_B(1 - cos(I_t - I_s, ΔT)) -> scalar. Pure."""
    delta = safe_normalize(target_features - source_features, eps)
    return jnp.mean(1.0 - jnp.sum(delta * text_feats.direction, axis=-1))


def directional_loss(
    clip_params, text_feats: ClipTextFeatures, source_image_01, target_image_01,
    preprocess: str = "faithful", eps: float = DEFAULT_EPS,
):
    """The CLIP2Protect paper's directional loss (eq. 2), ``1 - cos(ΔI, ΔT)`` averaged over the batch.

    Arguments as :func:`nce_loss`; ΔI = normalised CLIP feature change target - source, ΔT =
    ``text_feats.direction``. Returns a scalar (1 when target == source, with zero gradient).
    """
    i_s = clip_image_features(clip_params, source_image_01, preprocess, eps)
    i_t = clip_image_features(clip_params, target_image_01, preprocess, eps)
    return directional_loss_from_features(text_feats, i_s, i_t, eps)
