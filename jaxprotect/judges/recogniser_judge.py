"""Any jaxprotect recogniser as a judge, e.g. the held-out member of a surrogate ensemble.

:class:`RecogniserJudge` gives a :class:`jaxprotect.recognition.Recogniser` and its params the
judge interface of :mod:`jaxprotect.judges.verdict`: it detects faces with an MTCNN (the
detector passed in), aligns the chosen one to the ArcFace template at the recogniser's input side
(``align.align_face``, 5 landmarks) and embeds it; the score is the cosine similarity. Its
threshold has no documented default: pass one (e.g. calibrated on the data's different-person
pairs, or ``face_conventions.threshold`` for the AMT-GAN networks).
"""
from __future__ import annotations

import numpy as np

from jaxprotect.detect.align import align_face
from jaxprotect.judges.pick import nearest_inside
from jaxprotect.recognition import embed

__all__ = ["RecogniserJudge"]


class RecogniserJudge:
    """``embed(photo)`` (largest face) / ``embed_near(photo, box)`` -> embedding, or None; cosine score."""

    metric = "cosine similarity"
    higher_is_closer = True

    def __init__(self, recogniser, params, detector, threshold: float, name: str | None = None):
        import jax

        self.name = recogniser.name if name is None else name
        self.threshold = float(threshold)
        self._recogniser = recogniser
        self._params = params
        self._detector = detector
        self._embed = jax.jit(lambda p, x: embed(recogniser, p, x, 255.0))

    def _embed_face(self, photo, landmarks):
        side = int(self._recogniser.input_size[0])
        crop = align_face(photo, landmarks, side).image
        return np.asarray(self._embed(self._params, crop[None])[0], np.float64)

    def embed(self, photo: np.ndarray):
        """Embedding of the largest detected face of ``photo`` (uint8 [H, W, 3] RGB), or None."""
        det = self._detector.detect(np.asarray(photo, np.uint8))
        if len(det.boxes) == 0:
            return None
        areas = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
        return self._embed_face(photo, det.landmarks[int(np.argmax(areas))])

    def embed_near(self, photo: np.ndarray, box):
        """Embedding of the detected face whose centre is nearest the centre of ``box`` and inside it, or None."""
        det = self._detector.detect(np.asarray(photo, np.uint8))
        i = nearest_inside(det.boxes, box)
        return None if i is None else self._embed_face(photo, det.landmarks[i])

    @staticmethod
    def score(a, b) -> float:
        """Cosine similarity (higher = more alike)."""
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
