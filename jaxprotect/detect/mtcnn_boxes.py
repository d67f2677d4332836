"""The numpy bookkeeping of the MTCNN cascade, op for op as facenet-pytorch 2.6.0 does it.

Everything here mirrors ``facenet_pytorch/models/utils/detect_face.py`` in float32 (the dtype
the upstream tensors have), in the same operation order, so the numbers agree to the last bit
where the network outputs agree: ``area_resize`` (``imresample``), ``generate_bounding_box``,
``nms`` (torchvision ``batched_nms`` for one image), ``nms_min`` (upstream's numpy "Min" NMS),
``bbreg``, ``rerec`` and ``pad``. Boxes are float32 rows ``[x1, y1, x2, y2, score, ...]`` in pixel
units of the input image.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "integral_image",
    "area_resize",
    "area_resize_boxes",
    "generate_bounding_box",
    "nms",
    "nms_min",
    "bbreg",
    "rerec",
    "pad",
]

_F32 = np.float32


def integral_image(image: np.ndarray) -> np.ndarray:
    """Summed-area table of an [H, W, C] image: [H+1, W+1, C], zero first row and column.

    Integer images (uint8 photos) give an exact integer table (int32 when it cannot overflow,
    else int64); float images a float64 one.
    """
    h, w, c = image.shape
    if np.issubdtype(image.dtype, np.integer):
        big = int(np.iinfo(image.dtype).max) * h * w >= 2**31
        dtype = np.int64 if big else np.int32
    else:
        dtype = np.float64
    table = np.zeros((h + 1, w + 1, c), dtype)
    np.cumsum(image, axis=0, dtype=dtype, out=table[1:, 1:])
    np.cumsum(table[1:, 1:], axis=1, out=table[1:, 1:])
    return table


def _windows(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    o = np.arange(n_out)
    return (o * n_in) // n_out, -((-(o + 1) * n_in) // n_out)


def area_resize(table: np.ndarray, y0: int, y1: int, x0: int, x1: int, out_h: int, out_w: int) -> np.ndarray:
    """``F.interpolate(img[:, :, y0:y1, x0:x1], (out_h, out_w), mode="area")`` from a summed-area table.

    Returns [out_h, out_w, C] float32. Area interpolation is adaptive average pooling; PyTorch's
    CPU kernel sums each window and divides by its height, then by its width, in float32. On an
    integer image the window sums are exact, so dividing the same way reproduces PyTorch bit for bit.
    """
    ys, ye = _windows(y1 - y0, out_h)
    xs, xe = _windows(x1 - x0, out_w)
    ys, ye, xs, xe = ys + y0, ye + y0, xs + x0, xe + x0
    sums = table[ye][:, xe] - table[ys][:, xe] - table[ye][:, xs] + table[ys][:, xs]
    kh = (ye - ys).astype(_F32)[:, None, None]
    kw = (xe - xs).astype(_F32)[None, :, None]
    return sums.astype(_F32) / kh / kw


def area_resize_boxes(table: np.ndarray, y0, y1, x0, x1, size: int) -> np.ndarray:
    """:func:`area_resize` of k crops ``img[y0[i]:y1[i], x0[i]:x1[i]]`` to ``size x size`` at once.

    ``y0, y1, x0, x1``: int arrays [k] (non-empty crops inside the image). Returns
    [k, size, size, C] float32, each crop exactly as :func:`area_resize` gives it.
    """
    ys, ye = _box_windows(np.asarray(y0, np.int64), np.asarray(y1, np.int64), size)
    xs, xe = _box_windows(np.asarray(x0, np.int64), np.asarray(x1, np.int64), size)

    def corner(rows, cols):  # [k, size] x [k, size] -> [k, size, size, C]
        return table[rows[:, :, None], cols[:, None, :]]

    sums = corner(ye, xe) - corner(ys, xe) - corner(ye, xs) + corner(ys, xs)
    kh = (ye - ys).astype(_F32)[:, :, None, None]
    kw = (xe - xs).astype(_F32)[:, None, :, None]
    return sums.astype(_F32) / kh / kw


def _box_windows(start: np.ndarray, end: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive-pooling windows [k, size] for k ranges ``start:end`` (as :func:`_windows`, offset)."""
    o = np.arange(size)
    n = (end - start)[:, None]
    return start[:, None] + (o * n) // size, start[:, None] - ((-(o + 1) * n) // size)


def generate_bounding_box(reg: np.ndarray, prob: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """P-Net cells scoring ``>= threshold`` as boxes in image pixels.

    ``reg`` [H', W', 4] and ``prob`` [H', W'] (face probability) are one pyramid level's P-Net
    outputs; ``scale`` is that level's scale. Returns [k, 9] float32 rows
    ``[x1, y1, x2, y2, score, dx1, dy1, dx2, dy2]`` in row-major cell order (as ``nonzero``).
    """
    stride, cellsize = 2, 12
    yy, xx = np.nonzero(prob >= threshold)
    score = prob[yy, xx]
    offsets = reg[yy, xx]
    bb = np.stack([xx, yy], axis=1).astype(_F32)
    s = _F32(scale)
    q1 = np.floor((stride * bb + 1) / s)
    q2 = np.floor((stride * bb + cellsize - 1 + 1) / s)
    return np.concatenate([q1, q2, score[:, None], offsets], axis=1).astype(_F32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """torchvision ``nms`` (CPU kernel): indices kept, in descending score order.

    IoU uses areas ``(x2 - x1) * (y2 - y1)`` in float32 and suppresses ``iou > threshold``
    (the comparison in double, as the C++ kernel does). Equal scores are ordered by index (a
    stable sort); torchvision's sort is not stable, so for exact ties the choice may differ.
    Used for one image, where ``batched_nms`` reduces to ``nms``.
    """
    n = len(scores)
    if n == 0:
        return np.zeros((0,), np.int64)
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, i], _F32) for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(n, bool)
    keep = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[pos + 1 :]
        rest = rest[~suppressed[rest]]
        if rest.size == 0:
            continue
        w = np.maximum(_F32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(_F32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[iou.astype(np.float64) > iou_threshold]] = True
    return np.asarray(keep, np.int64)


def nms_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """The final O-Net NMS of ``detect_face.py`` (``nms_numpy`` with method "Min").

    Overlap = intersection / smaller area with ``+1`` pixel extents; boxes overlapping the
    current best by MORE than ``threshold`` are dropped. Returns kept indices, best first.
    """
    if boxes.size == 0:
        return np.zeros((0,), np.int64)
    x1, y1, x2, y2 = (boxes[:, i].copy() for i in range(4))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)  # upstream's default (quick)sort, ascending; best is last
    keep = []
    while order.size > 0:
        i = order[-1]
        keep.append(i)
        idx = order[:-1]
        w = np.maximum(0.0, np.minimum(x2[i], x2[idx]) - np.maximum(x1[i], x1[idx]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[idx]) - np.maximum(y1[i], y1[idx]) + 1)
        inter = w * h
        overlap = inter / np.minimum(area[i], area[idx])
        order = order[np.where(overlap <= threshold)]
    return np.asarray(keep, np.int64)


def bbreg(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply R-/O-Net box regression ``reg`` [k, 4] with ``+1`` pixel extents; returns a new array."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] = boxes[:, 0] + reg[:, 0] * w
    out[:, 1] = boxes[:, 1] + reg[:, 1] * h
    out[:, 2] = boxes[:, 2] + reg[:, 2] * w
    out[:, 3] = boxes[:, 3] + reg[:, 3] * h
    return out


def rerec(boxes: np.ndarray) -> np.ndarray:
    """Square the boxes around their centres (side = the longer side); returns a new array."""
    out = boxes.copy()
    h = out[:, 3] - out[:, 1]
    w = out[:, 2] - out[:, 0]
    side = np.maximum(w, h)
    out[:, 0] = out[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = out[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def pad(boxes: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integer crop bounds ``(y, ey, x, ex)`` (1-based starts): the crop is ``img[y-1:ey, x-1:ex]``.

    Coordinates are truncated toward zero, starts clipped to >= 1 and ends to the image size,
    as upstream ``pad`` does (it does not clip the other sides).
    """
    b = np.trunc(boxes[:, :4]).astype(np.int32)
    x, y, ex, ey = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    x[x < 1] = 1
    y[y < 1] = 1
    ex[ex > w] = w
    ey[ey > h] = h
    return y, ey, x, ex
