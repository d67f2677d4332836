"""AMT-GAN / CLIP2Protect face-recognition conventions: verification thresholds and the input crop.

Thresholds: AMT-GAN ``test.py`` ``th_dict``, cosine-similarity thresholds of its four surrogates
at FAR 0.1 / 0.01 / 0.001; a pair is a match when ``cos > threshold``. CLIP2Protect's protection
success rate (``black_box``) uses the FAR 0.01 column.

Input convention (CLIP2Protect ``adversarial_optimization.py``, AMT-GAN): crop the face box from
the [0, 1] RGB image with plain slicing, map to [-1, 1] with ``(x - 0.5) * 2``, and resize with
``F.interpolate(mode='bilinear', align_corners=False)`` (no antialias, no alignment warp) to
112x112 (IR152, IRSE50, MobileFace) or 160x160 (FaceNet).
"""
from __future__ import annotations

import jax.numpy as jnp

from jaxprotect.ops.resize import interpolate

__all__ = [
    "FARS",
    "CLIP2PROTECT_FAR",
    "AMT_GAN_THRESHOLDS",
    "AMT_GAN_INPUT_SIZE",
    "threshold",
    "box_slices",
    "amt_gan_input",
    "cosine_similarity",
    "is_match",
]

FARS = (0.1, 0.01, 0.001)
CLIP2PROTECT_FAR = 0.01
# registry name -> {FAR: cosine threshold}; AMT-GAN calls MobileFace "mobile_face"
AMT_GAN_THRESHOLDS = {
    "ir152": {0.1: 0.094632, 0.01: 0.166788, 0.001: 0.227922},
    "irse50": {0.1: 0.144840, 0.01: 0.241045, 0.001: 0.312703},
    "facenet": {0.1: 0.256587, 0.01: 0.409131, 0.001: 0.591191},
    "mobileface": {0.1: 0.183635, 0.01: 0.301611, 0.001: 0.380878},
}
AMT_GAN_INPUT_SIZE = {"ir152": (112, 112), "irse50": (112, 112), "mobileface": (112, 112), "facenet": (160, 160)}
_ALIASES = {"mobile_face": "mobileface"}


def _name(model: str) -> str:
    name = _ALIASES.get(model, model)
    if name not in AMT_GAN_THRESHOLDS:
        raise ValueError(f"no AMT-GAN threshold for {model!r}; known: {', '.join(AMT_GAN_THRESHOLDS)}")
    return name


def threshold(model: str, far: float = CLIP2PROTECT_FAR) -> float:
    """AMT-GAN cosine threshold of ``model`` (ir152, irse50, facenet, mobileface) at ``far`` (0.1, 0.01, 0.001)."""
    table = AMT_GAN_THRESHOLDS[_name(model)]
    for f, value in table.items():
        if abs(f - far) < 1e-12:
            return value
    raise ValueError(f"AMT-GAN has thresholds at FAR {FARS} only, not {far}")


def box_slices(box_xyxy, margin: int = 0) -> tuple[int, int, int, int]:
    """MTCNN box (x1, y1, x2, y2) floats -> CLIP2Protect's crop rows/cols ``(y0, y1, x0, x1)``.

    ``round(y1) - m : round(y2) + m, round(x1) - m : round(x2) + m`` with Python's round (half to
    even). Like upstream, nothing is clamped: a negative start wraps as in Python slicing.
    """
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return round(y1) - margin, round(y2) + margin, round(x1) - margin, round(x2) + margin


def amt_gan_input(images01, size, box: tuple[int, int, int, int] | None = None):
    """Face-recogniser input the AMT-GAN way.

    ``images01``: [N, H, W, 3] float32 NHWC RGB in [0, 1]. ``size``: (h, w), an int, or a model
    name from :data:`AMT_GAN_INPUT_SIZE`. ``box``: ``(y0, y1, x0, x1)`` crop (e.g. from
    :func:`box_slices`; Python ints, so it is static under ``jit``) or ``None`` for the whole image.
    Returns [N, h, w, 3] in [-1, 1] (``(crop - 0.5) * 2``, bilinear, align_corners=False, no
    antialias). Differentiable with respect to ``images01``.
    """
    if isinstance(size, str):
        size = AMT_GAN_INPUT_SIZE[_name(size)]
    if box is not None:
        y0, y1, x0, x1 = box
        images01 = images01[:, y0:y1, x0:x1, :]
    return interpolate((images01 - 0.5) * 2.0, size, mode="bilinear", align_corners=False)


def cosine_similarity(a, b, eps: float = 1e-8):
    """``torch.cosine_similarity(a, b, dim=-1)``: ``sum(a*b) / (max(|a|, eps) * max(|b|, eps))`` for [..., D]."""
    na = jnp.maximum(jnp.linalg.norm(a, axis=-1), eps)
    nb = jnp.maximum(jnp.linalg.norm(b, axis=-1), eps)
    return jnp.sum(a * b, axis=-1) / (na * nb)


def is_match(a, b, model: str, far: float = CLIP2PROTECT_FAR):
    """``cos(a, b) > threshold(model, far)`` per row: AMT-GAN's / CLIP2Protect's success test for impersonation."""
    return cosine_similarity(a, b) > threshold(model, far)
