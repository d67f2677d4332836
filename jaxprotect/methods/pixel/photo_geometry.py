"""Every chosen face of a photo through the full-resolution attack (:mod:`roi_attack`), one ROI after another.

Faces are attacked in turn on the photo as it stands (a later face's ROI sees the earlier faces'
perturbations as part of the photo). The written photo stays within each face's budget map of the
ORIGINAL: where two faces' masks overlap the larger budget applies, and rounding to uint8 never
leaves it (:func:`jaxprotect.ops.perceptual.to_uint8_within`). Pixels outside every face mask are
the original's, bit for bit.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from jaxprotect.methods.pixel.roi_attack import (
    FaceGeometry,
    RoiAttackConfig,
    attack_roi,
    face_geometry,
)
from jaxprotect.ops.perceptual import to_uint8_within

__all__ = ["RoiFace", "RoiEdit", "protect_faces"]


@dataclasses.dataclass
class RoiFace:
    """One attacked face: ``index`` among the detections, its :class:`FaceGeometry`, the surrogate
    ``losses`` [steps] and the written change's largest |delta| (grey levels)."""

    index: int
    geometry: FaceGeometry
    losses: np.ndarray
    linf: float


@dataclasses.dataclass
class RoiEdit:
    """The protected photo (uint8 [H, W, 3]), the budget map used [H, W, 1] (grey levels) and the faces."""

    image: np.ndarray
    budget: np.ndarray
    faces: list


def protect_faces(photo: np.ndarray, boxes, landmarks, indices: Sequence[int], surrogates, params, key,
                  config: RoiAttackConfig, lpips=None, progress: Callable | None = None,
                  face_started: Callable | None = None, target_feats=None) -> RoiEdit:
    """Attack the faces ``indices`` of ``photo`` (uint8 [H, W, 3] RGB) at its own resolution.

    ``boxes`` [n, 4] / ``landmarks`` [n, 5, 2] the detections (photo pixels); ``surrogates``/``params``
    the recognisers attacked; ``key`` a PRNG key (folded with each face's index); ``lpips`` a loaded
    LPIPS for ``config.lpips_weight``; ``progress(step)`` after each step; ``face_started(n, index)``
    before each face; ``target_feats`` candidate identities (per surrogate [T, D]) for
    ``config.target_weight``. Returns :class:`RoiEdit`.
    """
    import jax

    photo = np.asarray(photo, np.uint8)
    current = photo.copy()
    budget = np.zeros(photo.shape[:2] + (1,), np.float32)
    faces = []
    for n, i in enumerate(indices):
        if face_started is not None:
            face_started(n, i)
        geometry = face_geometry(current, boxes[i], landmarks[i], surrogates, config)
        delta, losses = attack_roi(surrogates, params, current, geometry, jax.random.fold_in(key, int(i)), config,
                                   lpips=lpips, progress=progress, target_feats=target_feats)
        roi = geometry.roi
        h, w = roi.shape
        eps = geometry.eps[:h, :w]
        budget[roi.slices] = np.maximum(budget[roi.slices], eps)
        current[roi.slices] = to_uint8_within(current[roi.slices], current[roi.slices].astype(np.float32) + delta, eps)
        faces.append(RoiFace(int(i), geometry, losses, float(np.abs(delta).max()) if delta.size else 0.0))
    # overlapping masks: keep every pixel within the largest budget any face gave it, relative to the original
    out = to_uint8_within(photo, current.astype(np.float32), budget)
    return RoiEdit(out, budget, faces)
