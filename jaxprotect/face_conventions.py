"""Face conventions shared by every method, judge and report.

- **Thresholds.** AMT-GAN ``test.py`` ``th_dict``: cosine thresholds of its four recognisers at
  FAR 0.1 / 0.01 / 0.001 (a pair matches when ``cos > threshold``; CLIP2Protect's success test
  uses FAR 0.01), and thresholds calibrated on a data set's own different-person pairs.
- **The box crop.** CLIP2Protect slices the MTCNN box out of the [0, 1] image with Python's
  banker's rounding, maps it to [-1, 1] with ``(x - 0.5) * 2`` and resizes it with
  ``F.interpolate(mode='bilinear', align_corners=False)`` (no antialias, no alignment warp) to
  112x112 (IR152, IRSE50, MobileFace) or 160x160 (FaceNet).
- **Which faces.** Which detected faces of a photo to protect (:func:`select_faces`) and which
  one face stands for a photo of one person (:func:`pick_face`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from jaxprotect.ops.resize import interpolate
from jaxprotect.recognition import cosine

__all__ = [
    "FARS",
    "CLIP2PROTECT_FAR",
    "AMT_GAN_THRESHOLDS",
    "AMT_GAN_INPUT_SIZE",
    "threshold",
    "box_slices",
    "amt_gan_input",
    "is_match",
    "amt_gan_match",
    "false_accept_rate",
    "calibrate_threshold",
    "pick_face",
    "FaceSelection",
    "select_faces",
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


def box_slices(box, image_hw: tuple[int, int], margin: int = 0) -> tuple[int, int, int, int]:
    """CLIP2Protect's crop of an MTCNN ``box`` (x1, y1, x2, y2): ``(top, bottom, left, right)``.

    ``top = round(y1) - margin``, ``bottom = round(y2) + margin`` (likewise x) with Python's round
    (half to even), as ``adversarial_optimization.py`` slices ``img[:, :, top:bottom, left:right]``;
    then clipped to the image (upstream would wrap a negative start around and then fail on the
    empty crop, so the clip only changes cases the original cannot run). Raises ``ValueError``
    when nothing of the box lies inside the image.
    """
    h, w = image_hw
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    top = min(max(round(y1) - margin, 0), h)
    bottom = min(max(round(y2) + margin, 0), h)
    left = min(max(round(x1) - margin, 0), w)
    right = min(max(round(x2) + margin, 0), w)
    if bottom <= top or right <= left:
        raise ValueError(f"face box {tuple(box[:4])} (margin {margin}) gives an empty crop of the {w}x{h} image")
    return top, bottom, left, right


def amt_gan_input(images01, size, box: tuple[int, int, int, int] | None = None):
    """Face-recogniser input the AMT-GAN way.

    ``images01``: [N, H, W, 3] float32 NHWC RGB in [0, 1]. ``size``: (h, w), an int, or a model
    name from :data:`AMT_GAN_INPUT_SIZE`. ``box``: ``(top, bottom, left, right)`` from
    :func:`box_slices` (Python ints, so static under ``jit``) or ``None`` for the whole image.
    Returns [N, h, w, 3] in [-1, 1] (``(crop - 0.5) * 2``, bilinear, align_corners=False, no
    antialias). Differentiable with respect to ``images01``.
    """
    if isinstance(size, str):
        size = AMT_GAN_INPUT_SIZE[_name(size)]
    if box is not None:
        top, bottom, left, right = box
        images01 = images01[:, top:bottom, left:right, :]
    return interpolate((images01 - 0.5) * 2.0, size, mode="bilinear", align_corners=False)


def is_match(score, threshold_value: float, higher_is_closer: bool = True):
    """A verification decision: ``score > threshold`` for similarities, ``score < threshold`` for
    distances. Works on floats (returns bool) and arrays (elementwise)."""
    out = np.greater(score, threshold_value) if higher_is_closer else np.less(score, threshold_value)
    return bool(out) if np.ndim(out) == 0 else out


def amt_gan_match(a, b, model: str, far: float = CLIP2PROTECT_FAR):
    """``cos(a, b) > threshold(model, far)`` per row of embeddings [..., D]: AMT-GAN's / CLIP2Protect's success test."""
    return np.asarray(cosine(a, b)) > threshold(model, far)


def false_accept_rate(negative_scores, threshold_value: float, higher_is_closer: bool = True) -> float:
    """Fraction of different-person pairs that the threshold accepts as the same person."""
    s = np.asarray(negative_scores, np.float64)
    return float(np.mean(s > threshold_value) if higher_is_closer else np.mean(s < threshold_value))


def calibrate_threshold(negative_scores, far: float, higher_is_closer: bool = True) -> float:
    """The strictest-but-one threshold whose false-accept rate on ``negative_scores`` is <= ``far``.

    ``negative_scores``: scores of different-person pairs. For similarities the threshold is the
    ``k``-th largest negative score with ``k = floor(far * n) + 1``, so at most ``floor(far * n)``
    negatives lie strictly above it (mirrored for distances). With few pairs the achievable FAR
    is coarse (261 pairs: steps of 0.38%); :func:`false_accept_rate` gives the one reached.
    """
    s = np.sort(np.asarray(negative_scores, np.float64))
    if s.size == 0:
        raise ValueError("no negative pairs to calibrate on")
    k = int(np.floor(far * s.size))
    return float(s[::-1][k] if higher_is_closer else s[k])


def _areas(boxes) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def pick_face(detections, rule: str = "best") -> int | None:
    """The one face that stands for a photo of one person, or None when there is no face.

    ``rule="best"``: the most probable face (facenet-pytorch ``MTCNN(select_largest=False)``,
    boxes[0], as CLIP2Protect); ``"largest"``: the largest box (``select_largest=True``, as
    FaceCloak and target photos). ``detections`` has ``boxes`` [n, 4] and ``probs`` [n].
    """
    if len(detections.boxes) == 0:
        return None
    if rule == "best":
        return int(np.argmax(np.asarray(detections.probs)))
    if rule == "largest":
        return int(np.argmax(_areas(detections.boxes)))
    raise ValueError(f"rule must be 'best' or 'largest', not {rule!r}")


@dataclasses.dataclass
class FaceSelection:
    """Which detected faces to protect: ``indices`` (detector order), ``skipped`` (one dict per
    face left alone: index, box, prob, reason) and ``warnings`` (human-readable lines)."""

    indices: list
    skipped: list
    warnings: list


def select_faces(detections, which="all", *, min_prob: float = 0.0, min_size: float = 0.0,
                 warn_below: float | None = None) -> FaceSelection:
    """Choose the faces of one photo to protect.

    ``which``: ``"all"``, ``"largest"`` (the largest face only) or an int N (the N largest).
    Faces with probability < ``min_prob`` or a box side (the shorter one) < ``min_size`` pixels
    are skipped with that reason; ``warn_below``: a skipped face whose probability is at least
    this value is also reported as a warning (a face-like region left unprotected).
    ``detections`` has ``boxes`` [n, 4] (x1, y1, x2, y2) and ``probs`` [n].
    """
    boxes = np.asarray(detections.boxes, np.float64).reshape(-1, 4)
    probs = np.asarray(detections.probs, np.float64).reshape(-1)
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) if len(boxes) else np.zeros(0)
    if which == "all":
        limit = len(boxes)
    elif which == "largest":
        limit = 1
    elif isinstance(which, (int, np.integer)) and int(which) >= 1:
        limit = int(which)
    else:
        raise ValueError(f"which must be 'all', 'largest' or a positive int, not {which!r}")
    order = np.argsort(-_areas(boxes), kind="stable")
    indices, skipped, warnings = [], [], []
    for i in order:
        reason = None
        if probs[i] < min_prob:
            reason = f"probability {probs[i]:.3f} < {min_prob:g}"
        elif sides[i] < min_size:
            reason = f"face {sides[i]:.0f} px < {min_size:g} px"
        elif len(indices) >= limit:
            reason = f"not among the {limit} largest face(s) (--faces {which})"
        if reason is None:
            indices.append(int(i))
            continue
        skipped.append({"index": int(i), "box": [float(v) for v in boxes[i]], "prob": float(probs[i]), "reason": reason})
        if warn_below is not None and probs[i] >= warn_below and probs[i] < min_prob:
            warnings.append(f"face {int(i)} at {[round(float(v)) for v in boxes[i]]} (probability {probs[i]:.2f}) "
                            f"looks like a face but was NOT protected: {reason}")
    return FaceSelection(sorted(indices), sorted(skipped, key=lambda s: s["index"]), warnings)
