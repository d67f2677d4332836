"""dlib's ResNet face recogniser as a judge (PyPI ``dlib-bin`` + ``face-recognition-models``).

dlib's own pipeline: HOG face detector (one upsampling), 5-point shape predictor, 150x150 chip,
128-D descriptor. The score is the Euclidean distance between descriptors; dlib documents 0.6
as its threshold (same person when the distance is below it; LFW 99.38%).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from jaxprotect.judges.pick import nearest_inside

__all__ = ["DlibJudge", "model_paths"]


def model_paths() -> tuple[Path, Path]:
    """(recogniser .dat, 5-point predictor .dat) of the installed ``face-recognition-models``.

    The package is located, not imported: its ``__init__`` needs ``pkg_resources``, which
    setuptools >= 81 no longer ships.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the dlib judge needs `pip install dlib-bin face-recognition-models`")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    rec = folder / "dlib_face_recognition_resnet_model_v1.dat"
    sp = folder / "shape_predictor_5_face_landmarks.dat"
    for p in (rec, sp):
        if not p.exists():
            raise FileNotFoundError(f"{p} missing; reinstall face-recognition-models")
    return rec, sp


class DlibJudge:
    """``embed(photo)`` -> 128-D descriptor of the largest face (or None); ``score`` = Euclidean distance."""

    name = "dlib"
    metric = "euclidean distance"
    higher_is_closer = False
    threshold = 0.6  # dlib's documented decision threshold

    def __init__(self, upsample: int = 1):
        import dlib

        rec, sp = model_paths()
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(sp))
        self._rec = dlib.face_recognition_model_v1(str(rec))
        self._upsample = upsample

    def embed(self, photo: np.ndarray):
        """``photo`` [H, W, 3] uint8 RGB -> float64 [128], or None when dlib finds no face."""
        photo = np.ascontiguousarray(photo, np.uint8)
        rects = self._detector(photo, self._upsample)
        if len(rects) == 0:
            return None
        rect = max(rects, key=lambda r: r.width() * r.height())
        shape = self._shape(photo, rect)
        return np.asarray(self._rec.compute_face_descriptor(photo, shape), np.float64)

    def embed_near(self, photo: np.ndarray, box):
        """The descriptor [128] of the detected face whose centre is nearest the centre of ``box``
        (x1, y1, x2, y2) and lies inside it, or None (for one face of a group photo)."""
        photo = np.ascontiguousarray(photo, np.uint8)
        rects = self._detector(photo, self._upsample)
        rect = nearest_inside([(r.left(), r.top(), r.right(), r.bottom()) for r in rects], box)
        if rect is None:
            return None
        shape = self._shape(photo, rects[rect])
        return np.asarray(self._rec.compute_face_descriptor(photo, shape), np.float64)

    @staticmethod
    def score(a, b) -> float:
        """Euclidean distance between two descriptors (lower = more alike)."""
        return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))
