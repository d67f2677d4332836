"""FaceCloak's pre-processing of every photo (``Cloaker.preprocess_image_for_user``, ``get_one_embed``).

1. MTCNN (``facenet_pytorch.MTCNN(image_size=112)``, ``select_largest=True``) finds the faces;
   the LARGEST box is kept (the whole image when there is none) and clamped to the photo.
2. The WHOLE photo is resized anisotropically with ``F.interpolate(scale_factor=(112/box_h,
   112/box_w), bilinear, align_corners=False)`` so the face box becomes about 112x112.
3. The crop ``[int(y1):int(y2), int(x1):int(x2)]`` of the resized photo is normalised with
   ``divide`` ((x - 127.5)·2/255, [-1, 1]) and resized bilinearly to exactly 112x112.

Everything here is numpy, float32 as PyTorch computes it: the resize is PyTorch's CPU bilinear
kernel (its rounding: :func:`resize_bilinear`), with source coordinates computed from the given
scale factor, not from the sizes.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "divide",
    "undivide",
    "largest_first",
    "largest_box",
    "clamp_box",
    "source_index",
    "resize_bilinear",
    "Preprocessed",
    "anisotropic_resize",
    "face_crop",
    "preprocess_photo",
]

_HALF = np.float32(0.5)


def divide(x):
    """``utils.preprocess_divide``: pixels 0..255 -> ``(x - 127.5) * 2./255`` in [-1, 1] (float32).

    Python reads ``(x - 127.5) * 2./255`` as ``((x - 127.5) * 2.) / 255``: a division, done here too.
    """
    x = np.asarray(x, np.float32)
    return (x - np.float32(127.5)) * np.float32(2.0) / np.float32(255.0)


def undivide(x):
    """Inverse of :func:`divide` without clipping: [-1, 1] -> 0..255 (float32)."""
    return np.asarray(x, np.float32) * np.float32(127.5) + np.float32(127.5)


def largest_first(detections):
    """Order of ``facenet_pytorch.MTCNN(select_largest=True).detect``: indices by box area, largest first."""
    boxes = np.asarray(detections.boxes)
    if len(boxes) == 0:
        return np.zeros((0,), int)
    return np.argsort((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[::-1]


def largest_box(detections, height: int, width: int):
    """The box FaceCloak uses: the largest face's ``(x1, y1, x2, y2)``, or the whole image when none."""
    order = largest_first(detections)
    if len(order) == 0:
        return (0.0, 0.0, float(width - 1), float(height - 1))
    return tuple(float(v) for v in np.asarray(detections.boxes)[order[0]])


def clamp_box(box, height: int, width: int):
    """Bounds checks of ``preprocess_image_for_user``: clamp to the photo; a degenerate box -> whole photo."""
    x1, y1, x2, y2 = (float(v) for v in box)
    x1 = max(0, min(x1, width - 1))
    y1 = max(0, min(y1, height - 1))
    x2 = max(0, min(x2, width - 1))
    y2 = max(0, min(y2, height - 1))
    if x2 <= x1 + 1 or y2 <= y1 + 1:
        x1, y1, x2, y2 = 0, 0, width - 1, height - 1
    return float(x1), float(y1), float(x2), float(y2)


def source_index(in_size: int, out_size: int, scale: float | None = None):
    """PyTorch's bilinear source indices and weights along one axis (align_corners=False).

    ``scale``: the ``scale_factor`` given to ``F.interpolate`` (then the ratio is ``1/scale``),
    or None (ratio ``in/out``). Returns ``(i0, i1, w0, w1)``: int arrays and float32 weights.
    """
    f32 = np.float32
    ratio = f32(1.0 / scale) if scale is not None else f32(in_size) / f32(out_size)
    dst = np.arange(out_size, dtype=f32)
    # ratio * (dst + 0.5) - 0.5 is one fused multiply-add in PyTorch's kernel: round once.
    src = (np.float64(ratio) * (dst + _HALF).astype(np.float64) - 0.5).astype(f32)
    src = np.maximum(src, f32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    w1 = np.clip(src - i0.astype(f32), f32(0), f32(1)).astype(f32)
    i1 = i0 + (i0 < in_size - 1)
    return i0, i1, (f32(1) - w1).astype(f32), w1


def _fma(p, q, s):
    """float32 ``p*q + s`` rounded once (the product of two float32 is exact in float64)."""
    return (p.astype(np.float64) * q.astype(np.float64) + s.astype(np.float64)).astype(np.float32)


def resize_bilinear(image, out_hw: tuple[int, int], scale_hw: tuple[float, float] | None = None):
    """``F.interpolate(bilinear, align_corners=False)`` of an [H, W, C] float32 image to ``out_hw``.

    ``scale_hw`` the scale factors when the code passes ``scale_factor`` (they set the sampling
    positions); None when it passes ``size``. Rounding as PyTorch 2.13's CPU kernel run on ONE
    thread (bit-exact on the goldens): weights ``w_ij = hλ_i·wλ_j`` rounded, then
    ``fma(w10, x10, fma(w00, x00, w01·x01))`` and ``fma(w11, x11, ·)``. With several threads
    PyTorch takes a separable path whose result differs by 1 ulp on about a third of the pixels
    (and CUDA, where the authors ran, differs again), so "the" upstream value is only defined to
    an ulp; the int16 truncation that follows is affected only within an ulp of an integer.
    Returns float32 [out_h, out_w, C].
    """
    x = np.asarray(image, np.float32)
    (oh, ow), (h, w) = out_hw, x.shape[:2]
    sy, sx = (None, None) if scale_hw is None else scale_hw
    h0, h1, a, b = source_index(h, oh, sy)
    w0, w1, c, d = source_index(w, ow, sx)
    a, b = a[:, None, None], b[:, None, None]
    c, d = c[None, :, None], d[None, :, None]
    w00, w01, w10, w11 = a * c, a * d, b * c, b * d
    top, bottom = x[h0], x[h1]
    acc = _fma(w00, top[:, w0], w01 * top[:, w1])
    acc = _fma(w10, bottom[:, w0], acc)
    return _fma(w11, bottom[:, w1], acc)


class Preprocessed(NamedTuple):
    """One photo as FaceCloak sees it.

    ``resized``: the anisotropically resized photo, float32 [H', W', 3] 0..255; ``box``: the face
    box in resized pixels ``(x1, y1, x2, y2)`` (floats); ``crop``: the normalised face crop
    float32 [S, S, 3] in [-1, 1]; ``scale``: ``(scale_y, scale_x)`` applied to the photo;
    ``original_box``: the clamped box in the photo's own pixels.
    """

    resized: np.ndarray
    box: tuple
    crop: np.ndarray
    scale: tuple
    original_box: tuple


def anisotropic_resize(photo, box, size: int = 112):
    """Resize the whole ``photo`` [H, W, 3] (0..255) so that the (clamped) ``box`` becomes ``size`` square.

    Returns ``(resized float32 [floor(H·sy), floor(W·sx), 3], box in resized pixels, (sy, sx))``.
    """
    photo = np.asarray(photo, np.float32)
    h, w = photo.shape[:2]
    x1, y1, x2, y2 = box
    sy, sx = size / (y2 - y1), size / (x2 - x1)
    out = (math.floor(float(h) * sy), math.floor(float(w) * sx))
    resized = resize_bilinear(photo, out, (sy, sx))
    return resized, (x1 * sx, y1 * sy, x2 * sx, y2 * sy), (sy, sx)


def face_crop(resized, box, size: int = 112):
    """``get_one_embed``'s crop: slice at ``int()`` of the box, ``divide``, bilinear to ``size`` square."""
    x1, y1, x2, y2 = (int(v) for v in box)
    crop = divide(np.asarray(resized, np.float32)[y1:y2, x1:x2])
    if crop.shape[0] == 0 or crop.shape[1] == 0:
        raise ValueError(f"empty face crop for box {box} in an image of shape {np.shape(resized)}")
    return resize_bilinear(crop, (size, size))


def preprocess_photo(photo, detector=None, size: int = 112, box=None) -> Preprocessed:
    """Steps 1-3 of the module docstring for one photo ([H, W, 3] uint8 or float 0..255).

    ``box`` (optional) replaces detection (e.g. a cached box); else ``detector.detect`` is run.
    """
    photo = np.asarray(photo)
    h, w = photo.shape[:2]
    if box is None:
        box = largest_box(detector.detect(photo), h, w)
    box = clamp_box(box, h, w)
    resized, rbox, scale = anisotropic_resize(photo, box, size)
    return Preprocessed(resized, rbox, face_crop(resized, rbox, size), scale, box)
