"""RGB <-> YCbCr as JPEG (JFIF) defines it, on NHWC arrays (any leading axes, channels last).

JFIF / ITU-R BT.601 full range, what libjpeg's ``jccolor.c``/``jdcolor.c`` compute in fixed point::

    Y  =  0.299 R + 0.587 G + 0.114 B
    Cb = -0.168736 R - 0.331264 G + 0.5 B + 128
    Cr =  0.5 R - 0.418688 G - 0.081312 B + 128

Images are float in [0, 255]. The ``*_delta`` forms apply only the linear part (no +128 offset):
they map a change of the RGB values to the change of Y, Cb, Cr and back.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = [
    "RGB_TO_YCBCR",
    "YCBCR_TO_RGB",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
    "rgb_delta_to_ycbcr",
    "ycbcr_delta_to_rgb",
    "luma",
]

RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float64
)
# libjpeg's decoder constants (jdcolor.c): R = Y + 1.402 Cr', G = Y - 0.344136 Cb' - 0.714136 Cr', B = Y + 1.772 Cb'.
YCBCR_TO_RGB = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]], np.float64)
_OFFSET = np.array([0.0, 128.0, 128.0], np.float32)


def _mix(matrix: np.ndarray, x):
    """``x @ matrix.T`` over the channel axis, as explicit weighted sums (elementwise, fused by XLA:
    a [..., 3] x [3, 3] dot is several times slower on CPU for photo-sized arrays)."""
    m = np.asarray(matrix, np.float32)
    chans = [x[..., c] for c in range(m.shape[1])]
    rows = []
    for r in range(m.shape[0]):
        acc = chans[0] * m[r, 0]
        for c in range(1, m.shape[1]):
            acc = acc + chans[c] * m[r, c]
        rows.append(acc)
    return jnp.stack(rows, axis=-1)


def rgb_to_ycbcr(rgb):
    """[..., 3] RGB in [0, 255] -> [..., 3] (Y, Cb, Cr) in [0, 255] (JFIF)."""
    return _mix(RGB_TO_YCBCR, rgb) + _OFFSET


def ycbcr_to_rgb(ycc):
    """[..., 3] (Y, Cb, Cr) in [0, 255] -> [..., 3] RGB (not clamped; libjpeg clamps to [0, 255])."""
    return _mix(YCBCR_TO_RGB, ycc - _OFFSET)


def rgb_delta_to_ycbcr(delta):
    """A change of RGB values [..., 3] -> the change of (Y, Cb, Cr) [..., 3] (linear part only)."""
    return _mix(RGB_TO_YCBCR, delta)


def ycbcr_delta_to_rgb(delta):
    """A change of (Y, Cb, Cr) [..., 3] -> the change of RGB [..., 3] (the exact inverse of :func:`rgb_delta_to_ycbcr`)."""
    return _mix(np.linalg.inv(RGB_TO_YCBCR), delta)


def luma(rgb):
    """JFIF luma Y [..., 1] of RGB [..., 3] in [0, 255]."""
    return _mix(RGB_TO_YCBCR[:1], rgb)
