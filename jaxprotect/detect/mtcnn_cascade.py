"""The MTCNN detection cascade (facenet-pytorch 2.6.0 ``detect_face``) with jit-compiled networks.

Pure in the params: ``detect_faces(params, image)`` takes ``params = {"pnet": ..., "rnet": ...,
"onet": ...}`` (linen params in facenet-pytorch key layout) and a uint8 RGB photo. The three
networks run jit-compiled with the params as an argument; resampling and box bookkeeping stay in
numpy (``mtcnn_boxes``), bit-faithful to the upstream float32 tensor code.

Shapes are bucketed so that photos of different sizes compile a handful of programs: the
pyramid levels are packed into one canvas of a bucketed size (``mtcnn_pyramid``), R-/O-Net
crops run in chunks of 16, 64, 256 or 1024 (:func:`_chunk_sizes`).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from jaxprotect.detect import mtcnn_boxes as mb
from jaxprotect.detect.mtcnn_nets import ONet, PNet, RNet
from jaxprotect.detect.mtcnn_pyramid import build_canvas, pyramid_scales

__all__ = ["Detections", "detect_faces", "DEFAULTS"]

DEFAULTS = {"min_face_size": 20, "thresholds": (0.6, 0.7, 0.7), "factor": 0.709}
_BATCHES = (16, 64, 256, 1024)  # R-/O-Net batch sizes (upstream uses chunks of 512; results do not depend on it)


class Detections(NamedTuple):
    """Faces found in one photo, best first (descending probability, as upstream returns them).

    ``boxes`` [n, 4] float32 ``x1, y1, x2, y2`` in pixels of the input photo (may extend past its
    edges); ``probs`` [n] float32 face probabilities; ``landmarks`` [n, 5, 2] float32 ``(x, y)`` of
    left eye, right eye, nose, left mouth corner, right mouth corner. ``n`` may be 0.
    """

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray


def _chunk_sizes(n: int) -> list[tuple[int, int]]:
    """Split n crops into (crops, padded batch) chunks of the bucketed sizes, padding at most ~1.5x.

    A bucket that would more than 1.5x the remaining crops gives way to the largest bucket that
    fits (293 crops: 256 + 16 + 16 + 16 padded from 5, not one batch of 1024).
    """
    chunks = []
    while n > 0:
        fit = next((b for b in _BATCHES if b >= n), None)
        below = [b for b in _BATCHES if b <= n]
        if fit is not None and (fit <= 1.5 * n or not below):
            chunks.append((n, fit))
            break
        take = below[-1]
        chunks.append((take, take))
        n -= take
    return chunks


@jax.jit
def _pnet(params, x, mask):
    return PNet().apply({"params": params}, x, mask)


@jax.jit
def _rnet(params, x):
    return RNet().apply({"params": params}, x)


@jax.jit
def _onet(params, x):
    return ONet().apply({"params": params}, x)


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x - np.float32(127.5)) * np.float32(0.0078125)


def _run_batched(fn, params, crops: np.ndarray):
    """Run a fixed-size net on [k, S, S, 3] crops in padded chunks of a bucketed size; numpy outputs."""
    if len(crops) == 0:  # every box fell outside the photo: empty outputs of the right widths
        return [np.asarray(o)[:0] for o in fn(params, np.zeros((_BATCHES[0],) + crops.shape[1:], np.float32))]
    pending, start = [], 0
    for count, size in _chunk_sizes(len(crops)):
        padded = np.zeros((size,) + crops.shape[1:], np.float32)
        padded[:count] = crops[start : start + count]
        pending.append((count, fn(params, padded)))  # dispatched; read back below
        start += count
    outs = [[np.asarray(o)[:count] for o in out] for count, out in pending]
    return [np.concatenate(parts, axis=0) for parts in zip(*outs)]


def _crops(table, boxes, w, h, size):
    """Resample each box's pixels (upstream ``pad`` bounds) to ``size``; drop empty boxes.

    Returns ``(crops [k, size, size, 3] normalised, kept index array)``. Upstream would fail on a
    box whose crop is empty (it skips the crop but not the box); here such a box is dropped.
    """
    y, ey, x, ex = mb.pad(boxes, w, h)
    kept = np.nonzero((ey > y - 1) & (ex > x - 1))[0]
    crops = mb.area_resize_boxes(table, y[kept] - 1, ey[kept], x[kept] - 1, ex[kept], size)
    return _normalise(crops), kept


def _empty() -> Detections:
    return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))


def detect_faces(params, image: np.ndarray, *, min_face_size: int = 20, thresholds=(0.6, 0.7, 0.7),
                 factor: float = 0.709, stages: dict | None = None) -> Detections:
    """Detect faces in one photo as ``MTCNN(select_largest=False).detect(img, landmarks=True)``.

    ``params``: ``{"pnet", "rnet", "onet"}`` linen params. ``image``: [H, W, 3] RGB, uint8 (or
    any real dtype holding 0..255 values; uint8 reproduces upstream's resampling bit for bit).
    Returns :class:`Detections` (empty arrays when there is no face, where upstream returns
    None). When ``stages`` is a dict it receives the boxes entering R-Net (``"rnet_input"``) and
    O-Net (``"onet_input"``), [k, 5] float32 ``x1, y1, x2, y2, score``.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3] RGB, got shape {image.shape}")
    h, w = image.shape[:2]
    table = mb.integral_image(image)
    stages = {} if stages is None else stages
    with jax.default_matmul_precision("highest"):
        boxes = _stage_one(params["pnet"], table, h, w, min_face_size, thresholds[0], factor)
        stages["rnet_input"] = boxes.copy()
        if len(boxes):
            boxes = _stage_two(params["rnet"], table, boxes, w, h, thresholds[1])
        stages["onet_input"] = boxes.copy()
        if not len(boxes):
            return _empty()
        return _stage_three(params["onet"], table, boxes, w, h, thresholds[2])


def _stage_one(params, table, h, w, min_face_size, threshold, factor):
    scales = pyramid_scales(h, w, min_face_size, factor)
    if not scales:
        return np.zeros((0, 5), np.float32)
    canvas = build_canvas(table, h, w, scales)
    reg, prob = (np.asarray(o[0]) for o in _pnet(params, canvas.image, canvas.mask))
    picked = []
    for scale, (y, x), (oh, ow) in zip(canvas.scales, canvas.origins, canvas.out_sizes):
        rows, cols = slice(y // 2, y // 2 + oh), slice(x // 2, x // 2 + ow)
        found = mb.generate_bounding_box(reg[rows, cols], prob[rows, cols, 1], scale, threshold)
        picked.append(found[mb.nms(found[:, :4], found[:, 4], 0.5)])
    boxes = np.concatenate(picked, axis=0)
    boxes = boxes[mb.nms(boxes[:, :4], boxes[:, 4], 0.7)]
    regw = boxes[:, 2] - boxes[:, 0]
    regh = boxes[:, 3] - boxes[:, 1]
    out = np.stack([
        boxes[:, 0] + boxes[:, 5] * regw,
        boxes[:, 1] + boxes[:, 6] * regh,
        boxes[:, 2] + boxes[:, 7] * regw,
        boxes[:, 3] + boxes[:, 8] * regh,
        boxes[:, 4],
    ], axis=1)
    return mb.rerec(out)


def _stage_two(params, table, boxes, w, h, threshold):
    crops, kept = _crops(table, boxes, w, h, 24)
    boxes = boxes[kept]
    reg, prob = _run_batched(_rnet, params, crops)
    score = prob[:, 1]
    ipass = score > threshold
    boxes = np.concatenate([boxes[ipass, :4], score[ipass, None]], axis=1)
    reg = reg[ipass]
    pick = mb.nms(boxes[:, :4], boxes[:, 4], 0.7)
    return mb.rerec(mb.bbreg(boxes[pick], reg[pick]))


def _stage_three(params, table, boxes, w, h, threshold):
    crops, kept = _crops(table, boxes, w, h, 48)
    boxes = boxes[kept]
    reg, marks, prob = _run_batched(_onet, params, crops)
    score = prob[:, 1]
    ipass = score > threshold
    boxes = np.concatenate([boxes[ipass, :4], score[ipass, None]], axis=1)
    reg, marks = reg[ipass], marks[ipass]
    w_i = boxes[:, 2] - boxes[:, 0] + 1
    h_i = boxes[:, 3] - boxes[:, 1] + 1
    px = w_i[:, None] * marks[:, :5] + boxes[:, 0, None] - 1
    py = h_i[:, None] * marks[:, 5:] + boxes[:, 1, None] - 1
    points = np.stack([px, py], axis=2)
    boxes = mb.bbreg(boxes, reg)
    pick = mb.nms_min(boxes[:, :4], boxes[:, 4], 0.7)
    boxes, points = boxes[pick], points[pick]
    return Detections(boxes[:, :4].copy(), boxes[:, 4].copy(), points.astype(np.float32))
