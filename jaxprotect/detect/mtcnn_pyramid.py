"""MTCNN's image pyramid, packed into one canvas so P-Net runs once per photo.

Upstream runs P-Net once per pyramid level. Under ``jit`` every level size would be a new
program to compile (about a second each on a small CPU), so the levels are packed side by side
into one canvas (skyline bottom-left packing, even origins, 2 pixels of padding after each
level) with a mask marking image pixels; the masked :class:`~jaxprotect.detect.mtcnn_nets.PNet`
gives each level the outputs it would get alone. Canvas sides are rounded up to a few sizes
per octave, so photos of similar size share one compiled program.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxprotect.detect import mtcnn_boxes as mb

__all__ = ["pyramid_scales", "level_size", "pnet_output_size", "bucket", "pack", "Canvas", "build_canvas"]

_GAP = 2  # padding pixels after each level: enough to keep every 3x3 window inside one level


def pyramid_scales(h: int, w: int, min_face_size: int = 20, factor: float = 0.709) -> list[float]:
    """Scales of the image pyramid, Python floats computed as upstream (12/min_face * factor^k)."""
    m = 12.0 / min_face_size
    minl = min(h, w) * m
    scales, scale = [], m
    while minl >= 12:
        scales.append(scale)
        scale = scale * factor
        minl = minl * factor
    return scales


def level_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """Size of one pyramid level, ``(int(h * scale + 1), int(w * scale + 1))`` as upstream."""
    return int(h * scale + 1), int(w * scale + 1)


def pnet_output_size(hs: int, ws: int) -> tuple[int, int]:
    """P-Net output cells for an ``hs x ws`` input (PyTorch sizes: conv3, pool 2/2 ceil, conv3, conv3)."""
    return -(-(hs - 4) // 2) - 3, -(-(ws - 4) // 2) - 3


def bucket(n: int) -> int:
    """Round a side up to one of eight sizes per octave (multiples of 16 up to 128): <= 12.5% padding."""
    if n <= 128:
        return -(-n // 16) * 16
    step = 2 ** (n.bit_length() - 4)
    return -(-n // step) * step


def _even(n: int) -> int:
    return n + (n & 1)


def pack(sizes: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Place rectangles ``(h, w)`` (largest first) in a canvas as wide as the two largest side by side.

    Skyline bottom-left: each rectangle (plus padding, rounded to even) goes where its top edge
    is lowest. Returns ``(origins [(y, x)], (canvas_h, canvas_w))``; every origin is even.
    """
    cells = [(_even(h + _GAP), _even(w + _GAP)) for h, w in sizes]
    width = sum(c[1] for c in cells[:2])
    skyline = [(0, width, 0)]  # segments (x, width, y), left to right, covering [0, width)
    origins = []
    for ch, cw in cells:
        best = None
        for i, (x, _, _) in enumerate(skyline):
            if x + cw > width:
                break
            top, j, reach = 0, i, x
            while reach < x + cw:
                top = max(top, skyline[j][2])
                reach = skyline[j][0] + skyline[j][1]
                j += 1
            if best is None or top < best[0]:
                best = (top, x)
        y, x = best
        origins.append((y, x))
        skyline = _raise_skyline(skyline, x, cw, y + ch)
    height = max(y for _, _, y in skyline)
    return origins, (height, width)


def _raise_skyline(skyline, x0, w, top):
    x1 = x0 + w
    out = []
    for x, sw, y in skyline:
        if x + sw <= x0 or x >= x1:
            out.append((x, sw, y))
            continue
        if x < x0:
            out.append((x, x0 - x, y))
        if x + sw > x1:
            out.append((x1, x + sw - x1, y))
    out.append((x0, w, top))
    return sorted(out)


class Canvas(NamedTuple):
    """Packed pyramid: ``image`` [1, H, W, 3] normalised levels, ``mask`` [1, H, W] (1 = level pixel),
    and per level its ``scale``, ``origin`` (y, x) and P-Net ``out_size`` (rows, cols)."""

    image: np.ndarray
    mask: np.ndarray
    scales: list[float]
    origins: list[tuple[int, int]]
    out_sizes: list[tuple[int, int]]


def build_canvas(table: np.ndarray, h: int, w: int, scales: list[float]) -> Canvas:
    """Resample the photo (summed-area ``table`` of [h, w, 3]) to every scale and pack the levels.

    Each level is ``imresample`` (area) of the whole photo, normalised ``(x - 127.5) * 0.0078125``.
    """
    sizes = [level_size(h, w, s) for s in scales]
    origins, (ch, cw) = pack(sizes)
    image = np.zeros((1, bucket(ch), bucket(cw), 3), np.float32)
    mask = np.zeros(image.shape[:3], np.float32)
    for (hs, ws), (y, x), s in zip(sizes, origins, scales):
        level = mb.area_resize(table, 0, h, 0, w, hs, ws)
        image[0, y:y + hs, x:x + ws] = (level - np.float32(127.5)) * np.float32(0.0078125)
        mask[0, y:y + hs, x:x + ws] = 1.0
    return Canvas(image, mask, list(scales), origins, [pnet_output_size(*sz) for sz in sizes])
