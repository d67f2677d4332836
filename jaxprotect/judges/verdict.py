"""The verdict on a protected photo: for each face and each judge, is the person still recognised?

A judge is any object with ``name``, ``metric``, ``higher_is_closer``, ``threshold``,
``score(a, b)`` and ``embed(photo_uint8) -> vector | None`` (the largest face); judges that also
have ``embed_near(photo_uint8, box) -> vector | None`` (the detected face nearest a box, as
:class:`~jaxprotect.judges.dlib_resnet.DlibJudge` and
:class:`~jaxprotect.judges.facenet_casia_cv2.FacenetCasiaJudge` do) are asked about that face, so
a neighbour in a group photo is never judged in its place.

For one face (MTCNN ``box`` in the photo), each judge compares the ORIGINAL face with the
PROTECTED one, both cut from the same context window around the box (the judge runs its own
detector and alignment inside it), and again after a real JPEG round trip of the whole protected
photo through Pillow (quality 75 by default: what posting a photo does). A face is protected
against a judge when the judge no longer matches it at the threshold; a judge that finds no face
in the protected photo counts as protected and says so. The threshold's source is reported (a
calibrated one, or the judge's documented default). A judge that was also used as a surrogate
(optimised against) is marked and does not count as independent: only independent judges make
the photo's verdict.

Everything returned is plain dicts, lists, floats, bools and strings (JSON-ready).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from jaxprotect.face_conventions import is_match
from jaxprotect.ops.jpeg import pillow_roundtrip

__all__ = [
    "Threshold",
    "default_threshold",
    "context_window",
    "judge_face",
    "face_verdict",
    "photo_verdict",
    "verdict_lines",
]


@dataclasses.dataclass(frozen=True)
class Threshold:
    """A decision threshold and where it comes from (e.g. "calibrated at FAR 1% on 262 pairs")."""

    value: float
    source: str


_DOCUMENTED = (
    ("dlib", "dlib's documented threshold (Euclidean distance; same person below it)"),
    ("facenet_casia", "TIP-IM config.py LFW threshold for FaceNet-CASIA (cosine; same person above it)"),
)


def default_threshold(judge) -> Threshold:
    """The judge's own ``threshold`` with its documented source."""
    for prefix, source in _DOCUMENTED:
        if judge.name.startswith(prefix):
            return Threshold(float(judge.threshold), source)
    return Threshold(float(judge.threshold), f"{judge.name}'s default threshold")


def context_window(photo_hw: tuple[int, int], box, context: float = 0.5) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of ``box`` (x1, y1, x2, y2) widened by ``context`` x its size on
    every side, clipped to the photo: what a judge's detector sees around one face."""
    h, w = photo_hw
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    bw, bh = x2 - x1, y2 - y1
    left = max(int(np.floor(x1 - context * bw)), 0)
    right = min(int(np.ceil(x2 + context * bw)), w)
    top = max(int(np.floor(y1 - context * bh)), 0)
    bottom = min(int(np.ceil(y2 + context * bh)), h)
    if right <= left or bottom <= top:
        raise ValueError(f"box {tuple(box[:4])} lies outside the {w}x{h} photo")
    return top, bottom, left, right


def _embed(judge, photo: np.ndarray, window, box):
    top, bottom, left, right = window
    crop = np.ascontiguousarray(photo[top:bottom, left:right])
    if hasattr(judge, "embed_near"):
        local = np.asarray(box[:4], np.float64) - np.array([left, top, left, top], np.float64)
        return judge.embed_near(crop, local)
    return judge.embed(crop)


def _decision(judge, threshold: Threshold, reference, probe) -> dict:
    if probe is None:
        return {"score": None, "protected": True, "margin": None,
                "note": "the judge finds no face here (counted as protected)"}
    score = float(judge.score(reference, probe))
    matched = is_match(score, threshold.value, judge.higher_is_closer)
    # margin > 0: on the protected side of the threshold, by that much
    margin = threshold.value - score if judge.higher_is_closer else score - threshold.value
    return {"score": score, "protected": not matched, "margin": float(margin)}


def judge_face(judge, original: np.ndarray, protected: np.ndarray, box, *, threshold: Threshold | None = None,
               surrogate: bool = False, jpeg_quality: int | None = 75, protected_jpeg: np.ndarray | None = None,
               context: float = 0.5) -> dict:
    """One judge's verdict on one face: original vs protected, and vs the protected photo after JPEG.

    ``original``, ``protected`` uint8 [H, W, 3] (same shape); ``box`` the face's (x1, y1, x2, y2)
    in them; ``threshold`` (default: :func:`default_threshold`); ``surrogate`` True when this
    judge's network was optimised against; ``jpeg_quality`` None skips the JPEG check;
    ``protected_jpeg`` a precomputed Pillow round trip of ``protected`` (else made here).
    Returns a dict: judge, metric, higher_is_closer, threshold, threshold_source, surrogate,
    independent, original_found, and (when the judge finds the original face) score, protected,
    margin (how far past the threshold on the protected side; negative: still recognised), and
    ``jpeg`` {quality, score, protected, margin}. When the judge finds no face in the original,
    ``protected`` is None (it cannot tell).
    """
    original = np.asarray(original, np.uint8)
    protected = np.asarray(protected, np.uint8)
    if original.shape != protected.shape:
        raise ValueError(f"original {original.shape} and protected {protected.shape} differ in shape")
    threshold = default_threshold(judge) if threshold is None else threshold
    window = context_window(original.shape[:2], box, context)
    row = {
        "judge": judge.name,
        "metric": judge.metric,
        "higher_is_closer": bool(judge.higher_is_closer),
        "threshold": float(threshold.value),
        "threshold_source": threshold.source,
        "surrogate": bool(surrogate),
        "independent": not surrogate,
    }
    reference = _embed(judge, original, window, box)
    row["original_found"] = reference is not None
    if reference is None:
        row.update(score=None, protected=None, margin=None,
                   note="the judge finds no face in the original here: no verdict")
        return row
    row.update(_decision(judge, threshold, reference, _embed(judge, protected, window, box)))
    if jpeg_quality is not None:
        if protected_jpeg is None:
            protected_jpeg = pillow_roundtrip(protected, jpeg_quality)
        row["jpeg"] = {"quality": int(jpeg_quality),
                       **_decision(judge, threshold, reference, _embed(judge, protected_jpeg, window, box))}
    return row


def _verdict_of(rows: Sequence[dict], key=None) -> bool | None:
    """True when every independent judge that could judge calls the face protected; None if none could."""
    values = []
    for r in rows:
        if not r["independent"] or r["protected"] is None:
            continue
        values.append(r["protected"] if key is None else r[key]["protected"])
    return None if not values else all(values)


def face_verdict(judges: Sequence, original: np.ndarray, protected: np.ndarray, box, *,
                 thresholds: Mapping[str, Threshold] | None = None, surrogates: Sequence[str] = (),
                 jpeg_quality: int | None = 75, protected_jpeg: np.ndarray | None = None,
                 context: float = 0.5) -> dict:
    """Every judge's verdict on one face (see :func:`judge_face`).

    ``thresholds`` maps judge names to :class:`Threshold` (missing: the judge's default);
    ``surrogates`` the names of judges that were optimised against. Returns {box, judges: [rows],
    protected: True/False/None (all independent judges agree it is protected / some still match
    / none could judge), protected_after_jpeg (the same after the JPEG round trip)}.
    """
    thresholds = thresholds or {}
    if jpeg_quality is not None and protected_jpeg is None:
        protected_jpeg = pillow_roundtrip(np.asarray(protected, np.uint8), jpeg_quality)
    rows = [judge_face(j, original, protected, box, threshold=thresholds.get(j.name), surrogate=j.name in surrogates,
                       jpeg_quality=jpeg_quality, protected_jpeg=protected_jpeg, context=context) for j in judges]
    out = {"box": [float(v) for v in box[:4]], "judges": rows, "protected": _verdict_of(rows)}
    if jpeg_quality is not None:
        out["protected_after_jpeg"] = _verdict_of(rows, "jpeg")
    return out


def photo_verdict(judges: Sequence, original: np.ndarray, protected: np.ndarray, boxes, on_face=None,
                  **kwargs) -> dict:
    """:func:`face_verdict` for every face ``boxes`` [n, 4] of a photo, plus a summary; ``on_face()`` is
    called after each face (a progress display).

    Returns {faces: [face verdicts, with ``index``], independent_judges: [names], surrogate_judges:
    [names], summary: {faces, protected, not_protected, undetermined, and the same after JPEG}}.
    ``kwargs`` go to :func:`face_verdict` (thresholds, surrogates, jpeg_quality, context).
    """
    jpeg_quality = kwargs.get("jpeg_quality", 75)
    if jpeg_quality is not None and kwargs.get("protected_jpeg") is None:
        kwargs["protected_jpeg"] = pillow_roundtrip(np.asarray(protected, np.uint8), jpeg_quality)
    faces = []
    for i, box in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        faces.append({"index": i, **face_verdict(judges, original, protected, box, **kwargs)})
        if on_face is not None:
            on_face()
    surrogates = set(kwargs.get("surrogates", ()))

    def count(key):
        vals = [f.get(key) for f in faces]
        return {"protected": sum(v is True for v in vals), "not_protected": sum(v is False for v in vals),
                "undetermined": sum(v is None for v in vals)}

    summary = {"faces": len(faces), **count("protected")}
    if jpeg_quality is not None:
        summary["after_jpeg"] = count("protected_after_jpeg")
    return {
        "faces": faces,
        "independent_judges": [j.name for j in judges if j.name not in surrogates],
        "surrogate_judges": [j.name for j in judges if j.name in surrogates],
        "summary": summary,
    }


def _cell(d: dict, judge_row: dict) -> str:
    if d.get("score") is None:
        return "no face -> protected" if d.get("protected") else "no verdict"
    rel = "<" if not judge_row["higher_is_closer"] else ">"
    word = "protected" if d["protected"] else "RECOGNISED"
    return f"{d['score']:.3f} (same if {rel} {judge_row['threshold']:.3f}) -> {word}"


def verdict_lines(verdict: dict) -> list[str]:
    """Console lines for a :func:`photo_verdict`: one per face and judge, surrogates marked."""
    lines = []
    for face in verdict["faces"]:
        x1, y1, x2, y2 = face["box"]
        state = {True: "protected", False: "NOT protected", None: "no independent verdict"}[face["protected"]]
        lines.append(f"face {face['index']} (box {x1:.0f},{y1:.0f}-{x2:.0f},{y2:.0f}): {state}")
        for r in face["judges"]:
            role = "surrogate, not independent" if r["surrogate"] else "independent"
            if not r["original_found"]:
                lines.append(f"  {r['judge']} ({role}): finds no face in the original here")
                continue
            text = f"  {r['judge']} ({role}): {_cell(r, r)}"
            if "jpeg" in r:
                text += f"; after JPEG {r['jpeg']['quality']}: {_cell(r['jpeg'], r)}"
            lines.append(text)
    s = verdict["summary"]
    line = f"{s['protected']}/{s['faces']} face(s) protected against every independent judge"
    if "after_jpeg" in s:
        line += f", {s['after_jpeg']['protected']}/{s['faces']} after JPEG"
    lines.append(line)
    return lines
