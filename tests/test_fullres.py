"""The full-resolution (photo geometry) path: budget and mask hold on the written photo; every face is protected."""
from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers.photo_corpus import astronaut
from helpers.photo_corpus import placed_face as _face
from helpers.tiny_recogniser import tiny_surrogate

from jaxprotect.detect.find_faces import FaceSearch, find_faces, merge_detections
from jaxprotect.detect.mtcnn_cascade import Detections
from jaxprotect.methods.pixel.fullres import FullResProtector
from jaxprotect.methods.pixel.photo_geometry import protect_faces
from jaxprotect.methods.pixel.protector import FaceChoice
from jaxprotect.methods.pixel.roi_attack import (
    Jitter,
    RoiAttackConfig,
    bucket_side,
    face_geometry,
    grid_factor,
)
from jaxprotect.ops.color import rgb_delta_to_ycbcr
from jaxprotect.ops.perceptual import TextureBudget


@pytest.fixture(scope="module")
def surrogates():
    a, pa = tiny_surrogate(32, seed=1)
    b, pb = tiny_surrogate(40, seed=2)
    return (a, b), (pa, pb)


CONFIG = RoiAttackConfig(steps=3, step_size=2.0, budget=TextureBudget(floor=2.0, ceiling=6.0), chroma_limit=1.5,
                         jitter=Jitter())


@pytest.mark.parametrize("face_cells", [None, 24])
def test_perturbation_stays_inside_the_face_mask_and_the_budget(surrogates, face_cells):
    photo = astronaut()
    lm, box = _face(1.0, 0.1, (240, 130))
    lm2, box2 = _face(0.8, -0.2, (380, 330))
    config = RoiAttackConfig(**{**CONFIG.__dict__, "face_cells": face_cells, "step_norm": "l2" if face_cells else "sign"})
    sur, params = surrogates
    edit = protect_faces(photo, np.stack([box, box2]), np.stack([lm, lm2]), [0, 1], sur, params, jax.random.key(0),
                         config)
    diff = edit.image.astype(np.float64) - photo
    budget = edit.budget.astype(np.float64)
    assert edit.image.dtype == np.uint8 and edit.image.shape == photo.shape
    assert np.all(np.abs(diff) <= budget + 1e-9)  # per-pixel L-inf budget, exactly, on the written photo
    outside = budget[..., 0] == 0
    assert np.all(diff[outside] == 0)  # outside every face mask: the original, bit for bit
    assert outside.mean() > 0.7  # the mask is the face, not a rectangle around it
    for face in edit.faces:
        roi = face.geometry.roi
        changed = np.abs(diff[roi.slices]).sum(-1) > 0
        assert changed.mean() > 0.05  # the face did change
        mask = face.geometry.mask[: roi.shape[0], : roi.shape[1], 0]
        assert np.all(mask[changed] > 0)  # only inside this face's mask
    chroma = np.abs(np.asarray(rgb_delta_to_ycbcr(diff.astype(np.float32)))[..., 1:])
    assert chroma.max() <= 1.5 + 1.0  # the chroma limit, up to uint8 rounding of the three channels
    assert 2 <= budget.max() <= 6


def test_geometry_buckets_and_grid(surrogates):
    photo = astronaut()
    lm, box = _face(1.0, 0.0, (256, 256))
    sur, _ = surrogates
    g = face_geometry(photo, box, lm, sur, CONFIG)
    assert g.bucket == (bucket_side(g.roi.shape[0]), bucket_side(g.roi.shape[1]))
    assert g.eps.shape == g.bucket + (1,) and np.all(g.eps[g.roi.shape[0]:] == 0)
    assert grid_factor(box, None) == 1 and grid_factor(box, 21) == round((box[2] - box[0]) / 21)
    assert bucket_side(100) == 128 and bucket_side(2049) == 2304


def test_every_detected_face_of_a_generated_group_photo_is_protected(surrogates):
    """Three copies of the astronaut's head on one canvas: all three are found and each one changes."""
    from jaxprotect.registry import load_network

    head = astronaut()[20:220, 130:310]
    canvas = np.full((260, 700, 3), 90, np.uint8)
    for x in (20, 250, 480):
        canvas[30:230, x:x + 180] = head
    sur, params = surrogates
    protector = FullResProtector(CONFIG, sur, params, load_network("mtcnn"), faces=FaceChoice("all", min_prob=0.9))
    det = protector.detect(canvas)
    assert len(det.boxes) == 3
    result = protector.protect(canvas, jax.random.key(1), detections=det)
    assert sorted(f.index for f in result.faces) == [0, 1, 2] and result.skipped == []
    diff = np.abs(result.image.astype(int) - canvas).sum(-1)
    for x in (20, 250, 480):
        assert diff[30:230, x:x + 180].mean() > 0.1, x
    assert np.all(diff[:, 205:245] == 0) and np.all(diff[:, 435:475] == 0)  # nothing between the faces


def test_merge_keeps_the_more_probable_of_overlapping_boxes():
    a = Detections(np.array([[0, 0, 10, 10]], np.float32), np.array([0.7], np.float32), np.zeros((1, 5, 2), np.float32))
    b = Detections(np.array([[1, 1, 11, 11], [50, 50, 60, 60]], np.float32), np.array([0.9, 0.8], np.float32),
                   np.ones((2, 5, 2), np.float32))
    m = merge_detections([a, b], iou=0.4)
    np.testing.assert_allclose(m.probs, [0.9, 0.8])
    np.testing.assert_allclose(m.boxes[0], [1, 1, 11, 11])


SELFIE = Path(os.environ.get("JAXPROTECT_SHARED", Path(__file__).resolve().parents[2] / "shared")) / \
    "assets/faces/deepface/selfie-many-people.jpg"


def test_the_padded_second_pass_finds_faces_cut_by_the_edge():
    if not SELFIE.exists():
        pytest.skip(f"{SELFIE} not found (shared test photos)")
    from jaxprotect.io import read_photo
    from jaxprotect.registry import load_network

    photo = read_photo(SELFIE)
    detector = load_network("mtcnn")
    default = detector.detect(photo)
    found = find_faces(detector, photo, FaceSearch())
    assert len(default.boxes) == 4
    strong = found.probs >= 0.9
    assert strong.sum() >= 6  # the selfie-taker (largest face, cut by two edges) and the top-right face too
    areas = (found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])
    d_areas = (default.boxes[:, 2] - default.boxes[:, 0]) * (default.boxes[:, 3] - default.boxes[:, 1])
    assert areas[strong].max() > 1.5 * d_areas.max()
