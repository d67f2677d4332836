"""TIP-IM's input diversity: a random affine warp, then a random rotation (``input_diversify.py``).

Every random number is drawn by :func:`sample_diversity` from an explicit key and handed to
:func:`input_diversity` as an array, so a parity test can feed the reference's own draws.
Warps reproduce ``F.affine_grid`` + ``F.grid_sample`` (bilinear, zero padding) with
``align_corners=False``, the default of the PyTorch >= 1.4 that TIP-IM's README asks for.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["DiversityDraw", "sample_diversity", "affine_grid", "grid_sample", "masked_warp", "input_diversity"]


class DiversityDraw(NamedTuple):
    """One iteration's draws: ``affine`` [N, 2, 3] (identity + noise) and ``angle`` [N] (radians)."""

    affine: jax.Array
    angle: jax.Array


def sample_diversity(key, n: int, std_range=(0.01, 0.1)) -> DiversityDraw:
    """Draw TIP-IM's diversity parameters for ``n`` images.

    As ``run.py``: ``std_proj`` and ``std_rotate`` ~ U(std_range), one of each per call (shared by
    the batch); then per image ``M = [[1,0,0],[0,1,0]] + N(0, std_proj)`` and ``theta ~ N(0, std_rotate)``.
    """
    k_sp, k_sr, k_m, k_t = jax.random.split(key, 4)
    lo, hi = std_range
    std_proj = jax.random.uniform(k_sp, (), minval=lo, maxval=hi)
    std_rot = jax.random.uniform(k_sr, (), minval=lo, maxval=hi)
    identity = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], jnp.float32)
    affine = identity + std_proj * jax.random.normal(k_m, (n, 2, 3), jnp.float32)
    angle = std_rot * jax.random.normal(k_t, (n,), jnp.float32)
    return DiversityDraw(affine, angle)


def affine_grid(theta, height: int, width: int):
    """``F.affine_grid(theta, (N, C, H, W), align_corners=False)``: theta [N, 2, 3] -> grid [N, H, W, 2] (x, y)."""
    xs = (2.0 * jnp.arange(width, dtype=jnp.float32) + 1.0) / width - 1.0
    ys = (2.0 * jnp.arange(height, dtype=jnp.float32) + 1.0) / height - 1.0
    gx, gy = jnp.meshgrid(xs, ys)  # [H, W]
    base = jnp.stack([gx, gy, jnp.ones_like(gx)], axis=-1)  # [H, W, 3]
    return jnp.einsum("hwk,njk->nhwj", base, theta, precision=jax.lax.Precision.HIGHEST)


def _sample_one(image, grid):
    """Bilinear, zero-padded sampling of ``image`` [H, W, C] at ``grid`` [h, w, 2]; returns (values, weight sum)."""
    height, width = image.shape[0], image.shape[1]
    ix = ((grid[..., 0] + 1.0) * width - 1.0) / 2.0
    iy = ((grid[..., 1] + 1.0) * height - 1.0) / 2.0
    x0 = jnp.floor(ix)
    y0 = jnp.floor(iy)
    out = 0.0
    weight_sum = 0.0
    for dy in (0, 1):
        for dx in (0, 1):
            xi = x0 + dx
            yi = y0 + dy
            w = (1.0 - jnp.abs(ix - xi)) * (1.0 - jnp.abs(iy - yi))
            valid = (xi >= 0) & (xi <= width - 1) & (yi >= 0) & (yi <= height - 1)
            w = jnp.where(valid, w, 0.0)
            xc = jnp.clip(xi, 0, width - 1).astype(jnp.int32)
            yc = jnp.clip(yi, 0, height - 1).astype(jnp.int32)
            out = out + w[..., None] * image[yc, xc]
            weight_sum = weight_sum + w
    return out, weight_sum


def grid_sample(images, grid):
    """``F.grid_sample(images, grid)`` (bilinear, zeros, align_corners=False) on NHWC ``images``."""
    return jax.vmap(lambda im, g: _sample_one(im, g)[0])(images, grid)


def masked_warp(images, theta):
    """TIP-IM's ``affine``: warp by ``theta`` [N, 2, 3] and zero every pixel the warp drew partly from outside.

    ``input_diversify.affine`` warps an all-ones image the same way and keeps only pixels whose
    value is >= 0.9999; that mask is a constant (no gradient), as there.
    """
    grid = affine_grid(theta, images.shape[1], images.shape[2])
    warped, weight_sum = jax.vmap(_sample_one)(images, grid)
    keep = jax.lax.stop_gradient(weight_sum >= 0.9999)
    return warped * keep[..., None].astype(warped.dtype)


def input_diversity(images, draw: DiversityDraw):
    """Random affine then random rotation (``input_diversify.input_diversity``).

    ``images`` [N, H, W, C] float32 in any range (TIP-IM: [0, 255]; outside pixels become 0);
    returns the same shape. The rotation matrix is ``[[cos, sin, 0], [-sin, cos, 0]]`` as in ``Rotate``.
    """
    out = masked_warp(images, draw.affine)
    cos, sin = jnp.cos(draw.angle), jnp.sin(draw.angle)
    zero = jnp.zeros_like(cos)
    rotation = jnp.stack([jnp.stack([cos, sin, zero], -1), jnp.stack([-sin, cos, zero], -1)], axis=1)
    return masked_warp(out, rotation)
