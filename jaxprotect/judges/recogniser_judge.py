"""Any jaxprotect recogniser as a judge, e.g. the held-out member of a surrogate ensemble.

:class:`RecogniserJudge` gives a :class:`jaxprotect.recognition.Recogniser` and its params the
judge interface of :mod:`jaxprotect.judges.verdict`: it detects faces with an MTCNN (the
detector passed in), aligns the chosen one to the ArcFace template at the recogniser's input side
(``align.align_face``, 5 landmarks) and embeds it; the score is the cosine similarity. Its
threshold has no documented default: pass one (e.g. calibrated on the data's different-person
pairs, or ``face_conventions.threshold`` for the AMT-GAN networks).

The same object serves ``jaxprotect evaluate`` (:func:`jaxprotect.eval.judges.recogniser_judge`), which
detects once per photo and calls :meth:`RecogniserJudge.embed_aligned` with the landmarks it found:
one implementation of "a jaxprotect recogniser as a judge".
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

    def __init__(self, recogniser, params, detector=None, threshold: float = float("nan"), name: str | None = None):
        import jax

        self.name = recogniser.name if name is None else name
        self.threshold = float(threshold)
        self._recogniser = recogniser
        self._params = params
        self._detector = detector
        self._embed = jax.jit(lambda p, x: embed(recogniser, p, x, 255.0))

    @classmethod
    def from_network(cls, net, detector=None, threshold: float = float("nan"), name: str | None = None):
        """The judge of a loaded :class:`jaxprotect.network.Network` (its params)."""
        from jaxprotect.recognition import recogniser_and_params

        return cls(*recogniser_and_params(net), detector, threshold, name)

    def embed_aligned(self, photo: np.ndarray, landmarks) -> np.ndarray:
        """Embedding (float64 [D]) of the face of ``photo`` (uint8 [H, W, 3]) with these 5 ``landmarks``
        ((5, 2) xy), aligned to the ArcFace template at the recogniser's input side."""
        return self._embed_face(photo, landmarks)

    def _detect(self, photo):
        if self._detector is None:
            raise ValueError(f"judge {self.name} has no detector: pass one, or call embed_aligned with landmarks")
        return self._detector.detect(np.asarray(photo, np.uint8))

    def _embed_face(self, photo, landmarks):
        side = int(self._recogniser.input_size[0])
        crop = align_face(photo, landmarks, side).image
        return np.asarray(self._embed(self._params, crop[None])[0], np.float64)

    def embed(self, photo: np.ndarray):
        """Embedding of the largest detected face of ``photo`` (uint8 [H, W, 3] RGB), or None."""
        det = self._detect(photo)
        if len(det.boxes) == 0:
            return None
        areas = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
        return self._embed_face(photo, det.landmarks[int(np.argmax(areas))])

    def embed_near(self, photo: np.ndarray, box):
        """Embedding of the detected face whose centre is nearest the centre of ``box`` and inside it, or None."""
        det = self._detect(photo)
        i = nearest_inside(det.boxes, box)
        return None if i is None else self._embed_face(photo, det.landmarks[i])

    @staticmethod
    def score(a, b) -> float:
        """Cosine similarity (higher = more alike)."""
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
