"""Small numerics CLIP2Protect's loss needs: PyTorch's clamp gradient, the cosine of
``cal_adv_loss``, and the face-recogniser input (crop to the MTCNN box, bilinear resize) as
per-photo matrices so that photos with different boxes batch under ``vmap``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxprotect.face_conventions import box_slices
from jaxprotect.ops.resize import interpolation_matrix

__all__ = ["clamp_torch", "to_unit_interval", "cos_simi", "crop_resize_matrices", "crop_resize"]


@jax.custom_vjp
def _clamp(x, lo, hi):
    return jnp.clip(x, lo, hi)


def _clamp_fwd(x, lo, hi):
    return jnp.clip(x, lo, hi), (x, lo, hi)


def _clamp_bwd(res, g):
    x, lo, hi = res
    # torch clamp backward: grad * (x >= min) * (x <= max), boundary included.
    return jnp.where((x >= lo) & (x <= hi), g, jnp.zeros_like(g)), None, None


_clamp.defvjp(_clamp_fwd, _clamp_bwd)


def clamp_torch(x, lo: float = 0.0, hi: float = 1.0):
    """``torch.clamp(x, lo, hi)`` with PyTorch's gradient: passed through on the CLOSED interval
    [lo, hi] (a value exactly at a bound keeps its full gradient), zero outside.

    (``jnp.clip`` differentiates through max/min and gives 0.5 at a tie.) Any shape, float32.
    """
    return _clamp(x, jnp.asarray(lo, x.dtype), jnp.asarray(hi, x.dtype))


def to_unit_interval(raw):
    """``((G(w) + 1) / 2).clamp(0, 1)`` (adversarial_optimization.py): raw generator images
    [..., H, W, 3] (about [-1, 1]) -> [0, 1] with PyTorch's clamp gradient."""
    return clamp_torch((raw + 1.0) / 2.0, 0.0, 1.0)


def cos_simi(emb, ref):
    """``cos_simi(emb_1, emb_2)`` of clip2protect_utils.py for one pair of embeddings [D]:
    ``sum(ref * emb) / |ref| / |emb|`` (same operation order; no floor, as upstream)."""
    return jnp.sum(ref * emb, axis=-1) / jnp.linalg.norm(ref, axis=-1) / jnp.linalg.norm(emb, axis=-1)


def crop_resize_matrices(box, margin: int, height: int, width: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows [out, height], cols [out, width]) float32 matrices such that
    ``rows @ x @ cols.T`` = ``F.interpolate(x[r0:r1, c0:c1], out_size, bilinear, align_corners=False)``.

    The bilinear weights are PyTorch's (:func:`jaxprotect.ops.resize.interpolation_matrix`) placed
    at the crop's offset; zeros elsewhere. Host-side numpy, one pair per photo and input size.
    """
    r0, r1, c0, c1 = box_slices(box, (height, width), margin)
    rows = np.zeros((out_size, height), np.float32)
    cols = np.zeros((out_size, width), np.float32)
    rows[:, r0:r1] = interpolation_matrix(r1 - r0, out_size, "bilinear", False)
    cols[:, c0:c1] = interpolation_matrix(c1 - c0, out_size, "bilinear", False)
    return rows, cols


def crop_resize(x, rows, cols):
    """Apply :func:`crop_resize_matrices`: ``x`` [..., H, W, C] -> [..., out, out, C] (float32,
    full precision). Differentiable in ``x``; ``rows``/``cols`` may carry leading batch axes
    matching ``x``'s."""
    hi = lax.Precision.HIGHEST
    y = jnp.einsum("...oh,...hwc->...owc", rows, x, precision=hi)
    return jnp.einsum("...pw,...owc->...opc", cols, y, precision=hi)
