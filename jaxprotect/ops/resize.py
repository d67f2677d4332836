"""Resizing that reproduces ``torch.nn.functional.interpolate`` (no antialias) on NHWC arrays.

``jax.image.resize`` antialiases when it shrinks and places samples differently from PyTorch, so
the originals' numbers cannot be reproduced with it. Here every mode except ``nearest`` is a pair
of small interpolation matrices built in numpy from PyTorch's index formulas (static shapes) and
applied with two ``einsum``s at full float32 precision: exact to rounding, differentiable, and
cheap for the sizes involved. ``nearest`` is a gather.
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["interpolate", "interpolation_matrix"]

_CUBIC_A = -0.75  # PyTorch's bicubic coefficient


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    a = _CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


@functools.lru_cache(maxsize=256)
def interpolation_matrix(in_size: int, out_size: int, mode: str, align_corners: bool = False) -> np.ndarray:
    """The (out_size, in_size) float32 matrix ``M`` with ``resize(x) = M @ x`` along one axis."""
    m = np.zeros((out_size, in_size), np.float64)
    # PyTorch computes source coordinates in float32; doing the same keeps the weights bit-close.
    f32 = np.float32
    dst = np.arange(out_size, dtype=f32)
    rows = np.arange(out_size)
    if mode == "area":  # adaptive_avg_pool
        for o in range(out_size):
            start = (o * in_size) // out_size
            end = -((-(o + 1) * in_size) // out_size)
            m[o, start:end] = 1.0 / (end - start)
        return m.astype(np.float32)
    if align_corners:
        scale = f32(in_size - 1) / f32(out_size - 1) if out_size > 1 else f32(0)
        src = dst * scale
    else:
        scale = f32(in_size) / f32(out_size)
        # torch evaluates scale * (dst + 0.5) - 0.5 as one fused multiply-add: round once.
        src = (np.float64(scale) * (dst + f32(0.5)).astype(np.float64) - 0.5).astype(f32)
    if mode == "bilinear":
        if not align_corners:
            src = np.maximum(src, f32(0))
        i0 = np.floor(src).astype(int)
        i0 = np.minimum(i0, in_size - 1)
        i1 = np.minimum(i0 + 1, in_size - 1)
        lam = (src - i0.astype(f32)).astype(np.float64)
        np.add.at(m, (rows, i0), 1.0 - lam)
        np.add.at(m, (rows, i1), lam)
    elif mode == "bicubic":
        i0 = np.floor(src).astype(int)
        w = _cubic_weights((src - i0.astype(f32)).astype(np.float64))
        for tap in range(4):
            idx = np.clip(i0 - 1 + tap, 0, in_size - 1)
            np.add.at(m, (rows, idx), w[:, tap])
    else:
        raise ValueError(f"unknown interpolation mode {mode!r}")
    return m.astype(np.float32)


def _nearest_index(in_size: int, out_size: int) -> np.ndarray:
    scale = np.float32(in_size) / np.float32(out_size)
    idx = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(int)
    return np.minimum(idx, in_size - 1)


def interpolate(x, size: int | tuple[int, int], mode: str = "nearest", align_corners: bool = False):
    """``F.interpolate(x, size, mode, align_corners)`` without antialias, on ``x`` [N, H, W, C].

    ``mode`` is ``nearest`` (PyTorch's legacy nearest), ``bilinear``, ``bicubic`` or ``area``.
    Values keep their range (no clamping, as in PyTorch). Returns [N, size_h, size_w, C].
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    in_h, in_w = x.shape[-3], x.shape[-2]
    if mode == "nearest":
        x = jnp.take(x, _nearest_index(in_h, out_h), axis=-3)
        return jnp.take(x, _nearest_index(in_w, out_w), axis=-2)
    mh = jnp.asarray(interpolation_matrix(in_h, out_h, mode, align_corners))
    mw = jnp.asarray(interpolation_matrix(in_w, out_w, mode, align_corners))
    hi = lax.Precision.HIGHEST
    x = jnp.einsum("oh,...hwc->...owc", mh, x, precision=hi)
    return jnp.einsum("pw,...owc->...opc", mw, x, precision=hi)
