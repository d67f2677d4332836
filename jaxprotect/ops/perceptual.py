"""Perceptual budgets for a perturbation ``delta`` of a face: where, and how much, the photo may change.

Everything is NHWC float32 on the **0-255** pixel scale: ``original`` [N, H, W, 3] RGB in [0, 255],
``delta`` the same shape (the protected image is ``original + delta``), budgets in grey levels.

* :func:`texture_budget` - a per-pixel L-inf budget map [N, H, W, 1]: more change where the
  original is textured, less on flat skin (:class:`TextureBudget` documents the formula).
* :func:`project_chroma` - bound the change of Cb and Cr (JFIF) separately from luma.
* :func:`project_delta` - a point of the budget set: the L-inf map, the chroma limit and the valid
  pixel range [0, 255] all hold on the result (every bound, exactly up to float rounding).
* :func:`lpips_distance`, :func:`lpips_hinge`, :func:`shrink_to_lpips` - LPIPS on the face as a
  penalty (hinge above a bound) or as a hard bound (largest step along ``delta`` that keeps LPIPS
  below it), for any LPIPS ``apply(params, a, b)`` on [-1, 1] images (jaxprotect's
  :class:`jaxprotect.models.lpips.LPIPS`, or another port with real weights).
* :func:`to_uint8_within` - the written photo: rounded to uint8 without leaving the L-inf budget.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

from jaxprotect.ops.color import luma, rgb_delta_to_ycbcr, ycbcr_delta_to_rgb

__all__ = [
    "TextureBudget",
    "luminance_jnd",
    "local_std",
    "texture_budget",
    "box_bounds",
    "project_chroma",
    "project_delta",
    "budget_violation",
    "lpips_distance",
    "lpips_hinge",
    "shrink_to_lpips",
    "to_uint8_within",
]


@dataclasses.dataclass(frozen=True)
class TextureBudget:
    """A texture- and luminance-masked L-inf budget (grey levels), computed from the ORIGINAL image.

    With ``Y`` the JFIF luma of the original, ``G`` a Gaussian window of ``window_sigma`` px:

    * local mean ``mu = G*Y`` and local standard deviation ``s = sqrt(G*((Y - mu)^2))``;
    * texture term ``t = min(s / texture_ref, 1)`` (0 on flat regions, 1 from ``texture_ref``
      grey levels of local contrast up);
    * optional luminance term (Chou & Li 1995, the visibility threshold of a change on a
      background of luminance ``mu``): ``jnd(mu) = 17 (1 - sqrt(mu / 127)) + 3`` below 127, else
      ``3 (mu - 127) / 128 + 3``; ``l = (jnd(mu) / 3) ** luminance_power`` (1 at mid-grey,
      larger in dark and very bright areas); ``luminance_power = 0`` (default) switches it off;
    * budget ``eps = clip((floor + (ceiling - floor) * t) * l, floor, ceiling)``.

    So flat skin gets ``floor``, hair, beard, eyebrows and edges up to ``ceiling``. Defaults:
    floor 2, ceiling 10 grey levels (the noise baselines spend a uniform 8-16 everywhere),
    ``texture_ref`` 16 grey levels, a 2-px window. Measured with real LPIPS-Alex on the face ROIs
    of 9 photos (astronaut, 8 deepface; experiments/texture_budget.py), random-sign noise shaped
    by this map has a median 0.75x (worst 1.02x, below 1 on 8 of 9 faces) the LPIPS of uniform
    noise of the same RMS; the luminance term did not help (0.75x at power 0.5, 0.79x at 1), so it
    is off by default (LPIPS does not model luminance adaptation, so this does not refute it either).
    """

    floor: float = 2.0
    ceiling: float = 10.0
    texture_ref: float = 16.0
    window_sigma: float = 2.0
    luminance_power: float = 0.0

    def __post_init__(self):
        if not 0 <= self.floor <= self.ceiling:
            raise ValueError(f"need 0 <= floor <= ceiling, got floor {self.floor}, ceiling {self.ceiling}")
        if self.texture_ref <= 0 or self.window_sigma <= 0 or self.luminance_power < 0:
            raise ValueError("texture_ref and window_sigma must be > 0 and luminance_power >= 0")


def luminance_jnd(mean_luma):
    """Chou & Li's luminance visibility threshold (grey levels) for a background of ``mean_luma`` (0..255)."""
    mu = jnp.clip(mean_luma, 0.0, 255.0)
    dark = 17.0 * (1.0 - jnp.sqrt(mu / 127.0)) + 3.0
    bright = 3.0 * (mu - 127.0) / 128.0 + 3.0
    return jnp.where(mu < 127.0, dark, bright)


def _blur(x, sigma: float):
    size = int(2 * np.ceil(3 * sigma) + 1)
    return dm_pix.gaussian_blur(x, sigma, size, padding="SAME")


def local_std(y, sigma: float):
    """(local mean ``mu = G*y``, local standard deviation ``sqrt(G*((y - mu)^2))``) [N, H, W, 1] of
    ``y`` [N, H, W, 1] in a Gaussian window ``G`` of ``sigma`` px.

    Borders: zero padding renormalised by the blurred ones, so the statistics near an edge use only
    the pixels inside the image.
    """
    ones = jnp.ones_like(y)
    norm = _blur(ones, sigma)
    mu = _blur(y, sigma) / norm
    # G*((Y - mu)^2) rather than G*(Y^2) - mu^2: no float32 cancellation on flat bright regions
    var = _blur((y - mu) ** 2, sigma) / norm
    return mu, jnp.sqrt(var)


def texture_budget(original, config: TextureBudget = TextureBudget(), mask=None):
    """The per-pixel L-inf budget [N, H, W, 1] (grey levels) of ``original`` [N, H, W, 3] RGB 0..255.

    ``mask`` (optional, [N, H, W, 1] or broadcastable, in [0, 1]) multiplies the budget, e.g. the
    feathered face mask: zero outside the face means no change there. See :class:`TextureBudget`.
    """
    y = luma(jnp.asarray(original, jnp.float32))
    mu, s = local_std(y, config.window_sigma)
    t = jnp.minimum(s / config.texture_ref, 1.0)
    eps = config.floor + (config.ceiling - config.floor) * t
    if config.luminance_power:
        eps = eps * (luminance_jnd(mu) / 3.0) ** config.luminance_power
    eps = jnp.clip(eps, config.floor, config.ceiling)
    if mask is not None:
        eps = eps * jnp.asarray(mask, jnp.float32)
    return eps


def box_bounds(original, eps):
    """(lo, hi) per channel: ``delta`` must satisfy ``lo <= delta <= hi`` for |delta| <= eps and 0..255.

    ``original`` [..., 3] in [0, 255]; ``eps`` broadcastable ([..., 1] map or a scalar), >= 0.
    """
    original = jnp.asarray(original, jnp.float32)
    eps = jnp.asarray(eps, jnp.float32)
    return jnp.maximum(-eps, -original), jnp.minimum(eps, 255.0 - original)


def project_chroma(delta, limit):
    """Clip the Cb and Cr change of ``delta`` [..., 3] (RGB, grey levels) to ``[-limit, limit]``.

    ``limit`` a scalar or a map broadcastable to [..., 1]. Luma is left as it is. This is the
    Euclidean projection in (Y, Cb, Cr) coordinates (per pixel), mapped back to RGB.
    """
    ycc = rgb_delta_to_ycbcr(delta)
    limit = jnp.asarray(limit, jnp.float32)
    chroma = jnp.clip(ycc[..., 1:], -limit, limit)
    return ycbcr_delta_to_rgb(jnp.concatenate([ycc[..., :1], chroma], axis=-1))


def project_delta(delta, original, eps, chroma_limit=None, iterations: int = 1):
    """A point of the budget set close to ``delta``: |delta| <= eps per channel, 0 <= original + delta <= 255,
    and (with ``chroma_limit``) |dCb|, |dCr| <= chroma_limit.

    ``delta``, ``original`` [..., 3] (0..255 scale); ``eps`` scalar or map [..., 1] (e.g.
    :func:`texture_budget`); ``chroma_limit`` scalar or map, or None. Without a chroma limit this
    is the exact Euclidean projection (a clip). With one, ``iterations`` rounds of alternating
    projections (box, then chroma) approach the intersection and a final radial shrink
    ``delta * t``, ``t = min(1, limit / |dCb|, limit / |dCr|)`` lands inside it: both sets are convex
    and contain 0, so every bound holds on the result (up to float rounding, ~1e-5 grey levels).
    The result is a feasible point, not always the exact Euclidean projection onto the intersection;
    on a real face one round is within 1e-5 (relative) of ten rounds' distance to ``delta``, hence the
    default (each round costs about 0.3 s of CPU, forward and backward, on a 2000x1900 ROI).
    """
    lo, hi = box_bounds(original, eps)
    delta = jnp.clip(delta, lo, hi)
    if chroma_limit is None:
        return delta
    limit = jnp.asarray(chroma_limit, jnp.float32)
    for _ in range(iterations):
        delta = jnp.clip(project_chroma(delta, limit), lo, hi)
    chroma = jnp.abs(rgb_delta_to_ycbcr(delta)[..., 1:])
    peak = jnp.max(chroma, axis=-1, keepdims=True)
    t = jnp.where(peak > limit, limit / jnp.maximum(peak, 1e-12), 1.0)
    return delta * t


def budget_violation(delta, original, eps, chroma_limit=None) -> dict:
    """The largest violation of each bound by ``delta`` (0 when it holds), as Python floats.

    Keys: ``linf`` (|delta| - eps), ``range`` (below 0 or above 255), ``chroma`` (|dCb|, |dCr| - limit).
    """
    delta = jnp.asarray(delta, jnp.float32)
    original = jnp.asarray(original, jnp.float32)
    out = {
        "linf": float(jnp.max(jnp.maximum(jnp.abs(delta) - jnp.asarray(eps, jnp.float32), 0.0))),
        "range": float(jnp.max(jnp.maximum(jnp.maximum(-(original + delta), original + delta - 255.0), 0.0))),
    }
    if chroma_limit is not None:
        chroma = jnp.abs(rgb_delta_to_ycbcr(delta)[..., 1:])
        out["chroma"] = float(jnp.max(jnp.maximum(chroma - jnp.asarray(chroma_limit, jnp.float32), 0.0)))
    return out


# ------------------------------------------------------------------------------------------------
# LPIPS on the face


def lpips_distance(apply: Callable, params, original, protected, scale: float = 255.0):
    """LPIPS [N] between face images ``original`` and ``protected`` [N, H, W, 3] in [0, ``scale``].

    ``apply(params, a, b)`` is an LPIPS on [-1, 1] NHWC images returning [N] (or [N, 1, 1, 1], as
    some ports do): e.g. ``lpips.apply, lpips.params`` of :class:`jaxprotect.models.lpips.LPIPS`.
    Pass the face region (the aligned crop or the face ROI), not the whole photo: LPIPS averages
    over the image, so background would dilute it. AlexNet needs H, W >= 31, VGG >= 16.
    """
    a = jnp.asarray(original, jnp.float32) * (2.0 / scale) - 1.0
    b = jnp.asarray(protected, jnp.float32) * (2.0 / scale) - 1.0
    d = apply(params, a, b)
    return jnp.reshape(d, (d.shape[0],))


def lpips_hinge(distance, bound: float):
    """The penalty ``max(distance - bound, 0)`` (per image): zero while LPIPS stays within ``bound``."""
    return jnp.maximum(distance - bound, 0.0)


def shrink_to_lpips(distance_fn: Callable, original, delta, bound: float, steps: int = 10):
    """Scale each image's ``delta`` down until LPIPS(original, original + t*delta) <= ``bound``.

    ``distance_fn(original, protected) -> [N]`` (e.g. ``functools.partial(lpips_distance, apply,
    params)``); ``original``, ``delta`` [N, H, W, 3]. ``t`` in [0, 1] per image: 1 when the full
    ``delta`` already satisfies the bound, else found by ``steps`` bisection steps, always keeping
    the largest ``t`` MEASURED to satisfy it (t = 0, no change, satisfies any bound >= 0).
    Returns (``delta * t``, ``t`` [N], the LPIPS at ``t`` [N]).
    """
    original = jnp.asarray(original, jnp.float32)
    delta = jnp.asarray(delta, jnp.float32)
    n = original.shape[0]

    def dist(t):
        return distance_fn(original, original + t[:, None, None, None] * delta)

    full = dist(jnp.ones((n,), jnp.float32))
    ok = full <= bound
    lo = jnp.where(ok, 1.0, 0.0)
    hi = jnp.ones((n,), jnp.float32)
    d_lo = jnp.where(ok, full, 0.0)  # LPIPS(x, x) = 0 at t = 0

    def body(_, carry):
        lo, hi, d_lo = carry
        mid = 0.5 * (lo + hi)
        d = dist(mid)
        good = d <= bound
        return jnp.where(good, mid, lo), jnp.where(good, hi, mid), jnp.where(good, d, d_lo)

    lo, hi, d_lo = jax.lax.fori_loop(0, steps, body, (lo, hi, d_lo))
    return delta * lo[:, None, None, None], lo, d_lo


def to_uint8_within(original_u8, protected, eps=None) -> np.ndarray:
    """The photo to write: ``protected`` rounded to uint8, kept within the L-inf budget of ``original_u8``.

    ``original_u8`` uint8 [..., 3]; ``protected`` float on 0..255; ``eps`` None (just round and clip)
    or a scalar / map broadcastable to [..., 1]. Rounding can carry a value up to 0.5 past a
    fractional budget, so the result is clipped to the integers inside ``original +- eps``
    (``ceil(x - eps)``, ``floor(x + eps)``): the L-inf bound holds exactly on the written pixels.
    The chroma limit then holds up to the rounding (|dCb|, |dCr| grow by at most 0.5).
    """
    x = np.asarray(original_u8, np.float64)
    out = np.rint(np.asarray(protected, np.float64))
    if eps is not None:
        eps = np.asarray(eps, np.float64)
        out = np.clip(out, np.ceil(x - eps - 1e-6), np.floor(x + eps + 1e-6))
    return np.clip(out, 0, 255).astype(np.uint8)
