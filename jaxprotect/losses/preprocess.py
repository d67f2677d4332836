"""CLIP's image preprocessing on tensors, differentiable, as Clip2Protect applies it.

Clip2Protect ``criteria/nce_loss.py`` builds ``Normalize(mean=-1, std=2)`` (x -> (x+1)/2) +
``Resize(224, bicubic)`` + ``CenterCrop(224)`` + CLIP's ``Normalize(mean, std)`` and applies it to
images that are ALREADY in [0, 1], so CLIP sees [0.5, 1] ("double un-normalisation").
``mode="faithful"`` keeps that; ``mode="correct"`` drops the extra (x+1)/2. The resize is what
torchvision 0.9.1 (pinned upstream) does on tensors: ``F.interpolate(bicubic, align_corners=False)``
without antialias, shorter side to 224.
"""
from __future__ import annotations

import jax.numpy as jnp

from jaxprotect.ops.resize import interpolate

__all__ = ["CLIP_MEAN", "CLIP_STD", "PREPROCESS_MODES", "clip_preprocess", "resize_shorter_side", "center_crop"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESS_MODES = ("faithful", "correct")


def resize_shorter_side(images, size: int):
    """torchvision 0.9.1 ``Resize(size, BICUBIC)`` on tensors: shorter side -> ``size``, the other
    ``int(size * long / short)``; bicubic (a = -0.75), align_corners False, no antialias.
    ``images`` [N, H, W, C] -> [N, H', W', C]; no resize when the shorter side is already ``size``."""
    h, w = images.shape[-3], images.shape[-2]
    if (w <= h and w == size) or (h <= w and h == size):
        return images
    out = (int(size * h / w), size) if w < h else (size, int(size * w / h))
    return interpolate(images, out, mode="bicubic", align_corners=False)


def center_crop(images, size: int):
    """torchvision 0.9.1 ``CenterCrop(size)`` (offsets ``int(round((H - size) / 2))``) on [N, H, W, C]."""
    h, w = images.shape[-3], images.shape[-2]
    if h < size or w < size:
        raise ValueError(f"center_crop({size}) of a {h}x{w} image")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return images[..., top : top + size, left : left + size, :]


def clip_preprocess(images_01, mode: str = "faithful", size: int = 224):
    """Clip2Protect's CLIP input: images [N, H, W, 3] float32 NHWC in [0, 1] -> [N, size, size, 3]
    CLIP-normalised (what ``encode_image`` takes).

    ``mode="faithful"``: (x+1)/2 first (upstream quirk; CLIP sees [0.5, 1]); ``"correct"``: without it.
    """
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"preprocess mode must be one of {PREPROCESS_MODES}, got {mode!r}")
    x = jnp.asarray(images_01, jnp.float32)
    if mode == "faithful":
        # Clip2Protect criteria/nce_loss.py: Normalize(mean=-1, std=2) on images already in [0, 1]
        x = (x + 1.0) / 2.0
    x = center_crop(resize_shorter_side(x, size), size)
    mean = jnp.asarray(CLIP_MEAN, jnp.float32)
    std = jnp.asarray(CLIP_STD, jnp.float32)
    return (x - mean) / std
