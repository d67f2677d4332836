"""Finding every face worth protecting: MTCNN twice (the photo, and the photo with a border) at candidate thresholds.

MTCNN (facenet-pytorch defaults) misses faces cut by the photo's edge: its P-Net scans windows
that lie inside the image, so a face half outside it is seen only as a fragment. On deepface's
``selfie-many-people.jpg`` (7 faces) the defaults find 4; the largest face (the selfie-taker, cut by
the right and bottom edges), a face cut by the top-right corner and one cut by the left and bottom
edges are missed. A second pass on the photo padded with its mean colour by ``pad`` of its longer
side lets those windows exist (measured in experiments/results/face_detection.md).

:func:`find_faces` runs both passes at ``candidate_thresholds`` (lower than the defaults' final
0.7, so face-like regions the detector is unsure of are found too), maps the padded pass's boxes
back, drops boxes less than ``min_inside`` of whose area lies inside the photo, and merges the two lists with NMS (the more
probable box of an overlapping pair stays). Which candidates get protected is then
:func:`jaxprotect.face_conventions.select_faces`'s job (minimum probability and size; the others
are reported, with a warning when they look like faces).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from jaxprotect.detect.mtcnn_cascade import Detections, detect_faces

__all__ = ["FaceSearch", "find_faces", "merge_detections"]


@dataclasses.dataclass(frozen=True)
class FaceSearch:
    """How :func:`find_faces` looks for faces.

    ``candidate_thresholds``: MTCNN's P/R/O-Net thresholds for candidates (defaults 0.6/0.7/0.7 find
    fewer); ``pad``: border of the second pass, as a fraction of the photo's longer side (0: one
    pass); ``min_inside``: share of a padded-pass box that must lie inside the photo (the
    selfie-taker of deepface's selfie is 41% inside); ``min_face_size``: MTCNN's smallest face (px);
    ``nms_iou``: overlap above which two candidates are the same face.
    """

    candidate_thresholds: tuple = (0.6, 0.6, 0.7)
    pad: float = 0.15
    min_inside: float = 0.25
    min_face_size: int = 20
    nms_iou: float = 0.4


def _iou(a, b) -> np.ndarray:
    x1 = np.maximum(a[0], b[:, 0])
    y1 = np.maximum(a[1], b[:, 1])
    x2 = np.minimum(a[2], b[:, 2])
    y2 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(area, 1e-9)


def merge_detections(parts, iou: float = 0.4) -> Detections:
    """One :class:`Detections` from several (same photo coordinates): greedy NMS by probability,
    best first."""
    boxes = np.concatenate([np.asarray(p.boxes, np.float32).reshape(-1, 4) for p in parts])
    probs = np.concatenate([np.asarray(p.probs, np.float32).reshape(-1) for p in parts])
    marks = np.concatenate([np.asarray(p.landmarks, np.float32).reshape(-1, 5, 2) for p in parts])
    order = np.argsort(-probs, kind="stable")
    keep = []
    for i in order:
        if keep and np.any(_iou(boxes[i], boxes[keep]) > iou):
            continue
        keep.append(int(i))
    keep = np.asarray(keep, np.int64)
    return Detections(boxes[keep], probs[keep], marks[keep])


def find_faces(detector, photo: np.ndarray, search: FaceSearch = FaceSearch()) -> Detections:
    """Candidate faces of ``photo`` (uint8 [H, W, 3] RGB), best first; ``detector`` an MTCNN
    (:func:`jaxprotect.detect.mtcnn.load_mtcnn`; its params are used, its thresholds are not)."""
    photo = np.asarray(photo, np.uint8)
    h, w = photo.shape[:2]
    kw = dict(min_face_size=search.min_face_size, thresholds=tuple(search.candidate_thresholds),
              factor=detector.factor)
    parts = [detect_faces(detector.params, photo, **kw)]
    pad = int(round(search.pad * max(h, w)))
    if pad > 0:
        canvas = np.empty((h + 2 * pad, w + 2 * pad, 3), np.uint8)
        canvas[:] = np.round(photo.reshape(-1, 3).mean(0)).astype(np.uint8)
        canvas[pad:pad + h, pad:pad + w] = photo
        d = detect_faces(detector.params, canvas, **kw)
        boxes = np.asarray(d.boxes, np.float32) - pad
        marks = np.asarray(d.landmarks, np.float32) - pad
        iw = np.clip(np.minimum(boxes[:, 2], w) - np.maximum(boxes[:, 0], 0), 0, None)
        ih = np.clip(np.minimum(boxes[:, 3], h) - np.maximum(boxes[:, 1], 0), 0, None)
        area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
        inside = iw * ih / area >= search.min_inside
        parts.append(Detections(boxes[inside], np.asarray(d.probs)[inside], marks[inside]))
    return merge_detections(parts, search.nms_iou)
