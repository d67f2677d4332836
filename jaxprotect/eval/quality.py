"""Image quality of a protected photo against its original: PSNR, SSIM (dm-pix) and LPIPS.

* PSNR: ``10 log10(1 / MSE)`` on [0, 1] values (``dm_pix.psnr``), i.e. data range 255 on uint8.
  Identical images give ``inf``.
* SSIM: ``dm_pix.ssim`` defaults (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, "valid"
  filtering, mean over pixels and channels) on [0, 1] values; equal to skimage's
  ``structural_similarity(channel_axis=-1, data_range=1, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)``.
* Face crop: the MTCNN box of the largest face found in the ORIGINAL, sliced as CLIP2Protect does
  (:func:`jaxprotect.face_conventions.box_slices`, no margin) from both images.
* LPIPS (v0.1, AlexNet by default, real weights): on the two face crops resized to 256x256 with
  Pillow's bicubic filter (antialiased when shrinking), mapped to [-1, 1]; one compiled program for
  every face size.

When the protected photo's size differs from the original's (tools that save at their working
resolution), the original is resized to the protected photo's size with Pillow's bicubic filter and
the report says so.
"""
from __future__ import annotations

import dm_pix
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxprotect.face_conventions import box_slices

__all__ = ["psnr", "ssim", "face_region", "resize_like", "lpips_face", "photo_quality", "LPIPS_FACE_SIZE"]

LPIPS_FACE_SIZE = 256


def _unit(image) -> jnp.ndarray:
    return jnp.asarray(np.asarray(image), jnp.float32) / 255.0


def psnr(a, b) -> float:
    """PSNR in dB of two uint8 [H, W, 3] images (data range 255); ``inf`` when they are identical."""
    value = float(dm_pix.psnr(_unit(a), _unit(b)))
    return value if np.isfinite(value) else float("inf")


def ssim(a, b) -> float:
    """Mean SSIM of two uint8 [H, W, 3] images (dm-pix defaults; both sides at least 11 px)."""
    if min(np.shape(a)[:2]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 px, not {np.shape(a)[:2]}")
    return float(dm_pix.ssim(_unit(a), _unit(b)))


def resize_like(image: np.ndarray, shape) -> np.ndarray:
    """``image`` (uint8 [H, W, 3]) resized to ``shape[:2]`` with Pillow bicubic (unchanged if equal)."""
    h, w = shape[:2]
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(np.asarray(image, np.uint8)).resize((w, h), Image.BICUBIC))


def face_region(box, image_shape) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` pixel slice of an MTCNN box (CLIP2Protect rounding, clipped)."""
    return box_slices(box, image_shape[:2])


def _crop(image, region):
    top, bottom, left, right = region
    return np.asarray(image)[top:bottom, left:right]


def lpips_face(lpips, a_crop: np.ndarray, b_crop: np.ndarray) -> float:
    """LPIPS between two uint8 face crops, both resized to 256x256 (Pillow bicubic), in [-1, 1]."""
    size = (LPIPS_FACE_SIZE, LPIPS_FACE_SIZE)
    x = [np.asarray(Image.fromarray(np.asarray(c, np.uint8)).resize(size, Image.BICUBIC), np.float32) / 127.5 - 1
         for c in (a_crop, b_crop)]
    return float(lpips(jnp.asarray(x[0])[None], jnp.asarray(x[1])[None])[0])


def photo_quality(original: np.ndarray, protected: np.ndarray, box=None, lpips=None) -> dict:
    """Quality of ``protected`` against ``original`` (uint8 [H, W, 3] each).

    ``box``: the original's face box (x1, y1, x2, y2) in the ORIGINAL's pixels, or None (no face
    metrics). ``lpips``: a loaded :class:`jaxprotect.models.lpips.LPIPS` or None. Returns
    ``{"psnr", "ssim", "face_psnr", "face_ssim", "face_lpips", "original_resized", "face_box"}``
    (face entries None when there is no box; ``face_lpips`` None without ``lpips``).
    """
    resized = original.shape[:2] != protected.shape[:2]
    if resized:
        sy, sx = protected.shape[0] / original.shape[0], protected.shape[1] / original.shape[1]
        original = resize_like(original, protected.shape)
        if box is not None:
            box = np.asarray(box[:4], np.float64) * np.array([sx, sy, sx, sy])
    out = {"psnr": psnr(original, protected), "ssim": ssim(original, protected), "original_resized": resized,
           "face_psnr": None, "face_ssim": None, "face_lpips": None, "face_box": None}
    if box is not None:
        region = face_region(box, original.shape)
        a, b = _crop(original, region), _crop(protected, region)
        out["face_box"] = [int(v) for v in region]
        out["face_psnr"] = psnr(a, b)
        out["face_ssim"] = ssim(a, b) if min(a.shape[:2]) >= 11 else None
        if lpips is not None:
            out["face_lpips"] = lpips_face(lpips, a, b)
    return out
