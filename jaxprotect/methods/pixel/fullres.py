"""The ``fullres`` method: every chosen face of a photo protected at the photo's own resolution.

:class:`FullResProtector` has the interface of :class:`~jaxprotect.methods.pixel.protector.PixelProtector`
(``protect(photo, key, progress, path, detections) -> ProtectedPhoto``), so the photo runner drives
either. Faces come from :func:`jaxprotect.detect.find_faces.find_faces` (two MTCNN passes at candidate
thresholds) and :class:`~jaxprotect.methods.pixel.protector.FaceChoice` picks the ones to protect;
each is attacked by :mod:`roi_attack` through :mod:`photo_geometry` (perturbation inside the feathered
face mask, texture- and chroma-limited budget, antialiased differentiable alignment, an ensemble of
surrogates, optional LPIPS penalty and re-compression EOT).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxprotect.detect.align import align_face, warp_affine
from jaxprotect.detect.find_faces import FaceSearch, find_faces
from jaxprotect.io.errors import NoFaceError
from jaxprotect.methods.pixel.photo_geometry import protect_faces
from jaxprotect.methods.pixel.protector import (
    FaceChoice,
    FaceResult,
    ProtectedPhoto,
    image_quality,
)
from jaxprotect.methods.pixel.roi_attack import RoiAttackConfig, alignment_matrix
from jaxprotect.recognition import cosine, embed

__all__ = ["FullResProtector"]


def _u8(x):
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@dataclasses.dataclass
class FullResProtector:
    """Protect the chosen faces of a photo with the full-resolution attack.

    ``config`` a :class:`RoiAttackConfig` (e.g. a preset of :mod:`jaxprotect.methods.pixel.presets`);
    ``surrogates``/``params`` the recognisers attacked (:func:`load_surrogates`); ``detector`` an MTCNN;
    ``lpips`` a loaded LPIPS-Alex when ``config.lpips_weight > 0``; ``faces`` which faces;
    ``search`` how candidates are found (None: one MTCNN pass at the detector's own thresholds);
    ``target_feats`` candidate identities per surrogate [T, D] (for ``config.target_weight``).
    """

    config: RoiAttackConfig
    surrogates: tuple
    params: tuple
    detector: Any
    lpips: Any = None
    faces: FaceChoice = FaceChoice()
    search: FaceSearch | None = FaceSearch()
    target_feats: Any = None
    method: str = "fullres"

    def __post_init__(self):
        if self.config.lpips_weight > 0 and self.lpips is None:
            raise ValueError("config.lpips_weight > 0 needs a loaded LPIPS (load_network('lpips_alex'))")
        self._embed = jax.jit(lambda params, crops: tuple(
            embed(s, p, c, 255.0) for s, p, c in zip(self.surrogates, params, crops)))

    @property
    def crop_size(self) -> int:
        """The largest surrogate input side (the aligned crops reported)."""
        return max(s.side for s in self.surrogates)

    def detect(self, photo: np.ndarray):
        """Candidate faces of ``photo`` (see ``search``)."""
        return self.detector.detect(photo) if self.search is None else find_faces(self.detector, photo, self.search)

    def _similarity(self, before: np.ndarray, after: np.ndarray, box, landmarks) -> dict:
        """Cosine per surrogate between the face before and after, each aligned as that surrogate's pipeline does."""
        mats = [alignment_matrix(s, box, landmarks, before.shape[:2]) for s in self.surrogates]
        crops_b = tuple(jnp.asarray(warp_affine(before, m, (s.side, s.side)))[None] for s, m in zip(self.surrogates, mats))
        crops_a = tuple(jnp.asarray(warp_affine(after, m, (s.side, s.side)))[None] for s, m in zip(self.surrogates, mats))
        fb, fa = self._embed(self.params, crops_b), self._embed(self.params, crops_a)
        return {s.name: float(cosine(a, b)[0]) for s, a, b in zip(self.surrogates, fa, fb)}

    def protect(self, photo: np.ndarray, key, progress: Callable | None = None, path=None, detections=None,
                face_started: Callable | None = None) -> ProtectedPhoto:
        """Protect the chosen faces of ``photo`` (uint8 [H, W, 3] RGB); raises NoFaceError when none is left.

        ``detections`` reuses an earlier :meth:`detect`; ``progress(step)`` after each attack step;
        ``face_started(n, index)`` before the n-th face (detector index ``index``).
        """
        photo = np.asarray(photo, np.uint8)
        start = time.perf_counter()
        det = self.detect(photo) if detections is None else detections
        if len(det.boxes) == 0:
            raise NoFaceError(path, "no face detected (MTCNN); nothing to protect, nothing written")
        selection = self.faces.select(det)
        if not selection.indices:
            reasons = "; ".join(f"face {s['index']}: {s['reason']}" for s in selection.skipped)
            raise NoFaceError(path, f"no face left to protect ({reasons}); nothing written")
        edit = protect_faces(photo, det.boxes, det.landmarks, selection.indices, self.surrogates, self.params, key,
                             self.config, lpips=self.lpips, progress=progress, face_started=face_started,
                             target_feats=self.target_feats)
        seconds = time.perf_counter() - start
        faces = []
        for face in edit.faces:
            i = face.index
            lm = det.landmarks[i]
            before = align_face(photo, lm, 112).image
            after = align_face(edit.image, lm, 112).image
            faces.append(FaceResult(
                index=i, box=[float(v) for v in det.boxes[i]], prob=float(det.probs[i]),
                matrix=align_face(photo, lm, self.crop_size).matrix,
                similarity_to_original=self._similarity(photo, edit.image, det.boxes[i], lm),
                face_quality={**image_quality(_u8(before), _u8(after)), "linf": face.linf,
                              "roi": [int(v) for v in face.geometry.roi]},
            ))
        trace = {"loss_first_last": [[float(f.losses[0]), float(f.losses[-1])] if len(f.losses) else []
                                     for f in edit.faces]}
        return ProtectedPhoto(edit.image, faces, selection.skipped, selection.warnings,
                              image_quality(photo, edit.image), seconds, trace)
