"""The verdict ``protect`` gives each photo: the installed real judges on every protected face.

:class:`PhotoJudges` loads the installed judges once (dlib; FaceNet-CASIA through OpenCV) and, for
one protected photo, runs :func:`jaxprotect.judges.verdict.photo_verdict` on its protected faces:
each judge compares the original face with the protected one, and again after a real JPEG-75
round trip. A judge whose network was among the surrogates (FaceNet-CASIA when the ensemble
includes the ``facenet_casia`` port) is marked and does not count as independent.

Thresholds (:data:`VERDICT_THRESHOLDS`): for each judge the stricter of its documented threshold and
the one calibrated at FAR 1% on deepface's different-person pairs, i.e. the one under which the
judge still recognises more faces; a face is called protected only when it is past that one.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from jaxprotect.judges.verdict import Threshold, photo_verdict, verdict_lines

__all__ = ["VERDICT_THRESHOLDS", "judge_network", "PhotoJudges"]

# judge name prefix -> Threshold (see the module docstring; numbers from experiments/results/publishable.md)
VERDICT_THRESHOLDS = {
    "dlib": Threshold(0.6756, "calibrated at FAR 1% on deepface's 262 different-person pairs (dlib documents 0.6; "
                              "the calibrated one is stricter: same person below it)"),
    "facenet_casia": Threshold(0.4290, "TIP-IM's LFW threshold (FAR-1% calibration on deepface gives 0.506; the "
                                       "documented one is stricter: same person above it)"),
}


def judge_network(judge_name: str) -> str:
    """The recogniser behind a judge's name ("facenet_casia (cv2)" -> "facenet_casia")."""
    return judge_name.split(" ")[0]


def _threshold(judge) -> Threshold | None:
    return VERDICT_THRESHOLDS.get(judge_network(judge.name))


class PhotoJudges:
    """The installed judges (``names`` None: every one :func:`jaxprotect.judges.available_judges` finds;
    ``()``: none). ``detector`` an MTCNN the FaceNet judge shares. ``jpeg_quality`` of the round trip."""

    def __init__(self, names: Sequence[str] | None = None, detector=None, jpeg_quality: int = 75):
        from jaxprotect.judges import available_judges, load_judge

        self.names = list(available_judges() if names is None else names)
        self.judges = [load_judge(n, detector) for n in self.names]
        self.jpeg_quality = jpeg_quality

    def __bool__(self) -> bool:
        return bool(self.judges)

    def verdict(self, original: np.ndarray, protected: np.ndarray, boxes, surrogates: Sequence[str],
                on_face: Callable | None = None) -> dict:
        """:func:`photo_verdict` of the faces at ``boxes`` [n, 4]; ``surrogates`` the recogniser names
        attacked (judges running one of them are not independent); ``on_face()`` after each face."""
        thresholds = {j.name: t for j in self.judges if (t := _threshold(j)) is not None}
        surrogate_judges = [j.name for j in self.judges if judge_network(j.name) in set(surrogates)]
        return photo_verdict(self.judges, original, protected, np.asarray(boxes, np.float64).reshape(-1, 4),
                             thresholds=thresholds, surrogates=surrogate_judges, jpeg_quality=self.jpeg_quality,
                             on_face=on_face)

    @staticmethod
    def lines(verdict: dict) -> list[str]:
        """Console lines of a verdict (one per face and judge, then the summary)."""
        return verdict_lines(verdict)

    @staticmethod
    def caption(verdict: dict) -> list[str]:
        """Short lines for the side-by-side image: per judge, faces protected before / after JPEG."""
        s = verdict["summary"]
        out = []
        indep = verdict["independent_judges"]
        names = {r["judge"] for f in verdict["faces"] for r in f["judges"]}
        for name in sorted(names):
            rows = [r for f in verdict["faces"] for r in f["judges"] if r["judge"] == name and r["original_found"]]
            ok = sum(r["protected"] is True for r in rows)
            jp = sum(bool(r.get("jpeg", {}).get("protected")) for r in rows)
            role = "independent" if name in indep else "surrogate"
            missed = len(verdict["faces"]) - len(rows)
            out.append(f"{name} ({role}): {ok}/{len(rows)} judged face(s) not recognised, after JPEG 75 {jp}/{len(rows)}"
                       + (f" ({missed} face(s) its detector does not find)" if missed else ""))
        out.append(f"verdict: {s['protected']}/{s['faces']} face(s) protected against every independent judge"
                   + (f", {s['after_jpeg']['protected']}/{s['faces']} after JPEG" if "after_jpeg" in s else ""))
        return out
