"""Box crops, 5-point similarity alignment and the feathered paste-back."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from skimage import transform as sktf

from jaxprotect.face_conventions import box_slices
from jaxprotect.detect.align import (
    ARCFACE_112,
    align_face,
    box_crop,
    paste_back,
    similarity_transform,
    template,
    warp_affine,
)
from jaxprotect.ops.resize import interpolate
from helpers.photo_corpus import astronaut


@pytest.fixture(scope="module")
def face():
    """The astronaut photo with its MTCNN detection (shipped weights)."""
    from jaxprotect.registry import load_network

    photo = astronaut()
    found = load_network("mtcnn").detect(photo)
    assert len(found.boxes) == 1
    return photo, found.boxes[0], found.landmarks[0]


def _skimage_similarity(src, dst):
    if hasattr(sktf.SimilarityTransform, "from_estimate"):
        return sktf.SimilarityTransform.from_estimate(src, dst).params
    t = sktf.SimilarityTransform()
    t.estimate(src, dst)
    return t.params


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_similarity_matches_skimage_umeyama(seed):
    rng = np.random.default_rng(seed)
    src = rng.normal(size=(5, 2)) * 40 + 200
    dst = template(112) + rng.normal(size=(5, 2))
    np.testing.assert_allclose(similarity_transform(src, dst), _skimage_similarity(src, dst)[:2], atol=1e-10)


def test_similarity_recovers_an_exact_transform_and_refuses_degenerate_points():
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = template(112)
    got = similarity_transform(src, src @ rot.T + shift)
    np.testing.assert_allclose(got[:, :2], rot, atol=1e-12)
    np.testing.assert_allclose(got[:, 2], shift, atol=1e-10)
    with pytest.raises(ValueError, match="degenerate"):
        similarity_transform(np.ones((5, 2)), template(112))


def test_templates():
    np.testing.assert_allclose(template(112), ARCFACE_112)
    np.testing.assert_allclose(template(160), ARCFACE_112 * 160 / 112)


def test_warp_matches_skimage_bilinear():
    rng = np.random.default_rng(4)
    image = rng.uniform(0, 255, (70, 90, 3))
    matrix = similarity_transform(rng.uniform(10, 80, (5, 2)), template(112))
    got = warp_affine(image, matrix, (112, 112))
    tf = sktf.SimilarityTransform(matrix=np.vstack([matrix, [0, 0, 1]]))
    want = sktf.warp(image, tf.inverse, output_shape=(112, 112), order=1, mode="constant", cval=0,
                     preserve_range=True)
    np.testing.assert_allclose(got, want, atol=1e-3)


@pytest.mark.parametrize("size", [112, 160])
def test_alignment_puts_the_face_on_the_template(face, size):
    photo, _, landmarks = face
    crop = align_face(photo, landmarks, size)
    assert crop.image.shape == (size, size, 3) and crop.image.dtype == np.float32
    moved = landmarks @ crop.matrix[:, :2].T + crop.matrix[:, 2]
    unit = size / 112
    assert np.abs(moved - template(size))[:2].max() < 4 * unit  # eyes (a least-squares fit, not exact)
    assert np.linalg.norm(moved - template(size), axis=1).mean() < 6 * unit
    # MTCNN run on the aligned crop itself finds an upright face with its landmarks where the template says
    from jaxprotect.registry import load_network

    again = load_network("mtcnn").detect(np.rint(crop.image).astype(np.uint8))
    assert len(again.boxes) >= 1
    assert np.linalg.norm(again.landmarks[0] - moved, axis=1).max() < 3 * unit


def test_box_slices_uses_bankers_rounding_margin_and_clipping():
    assert box_slices([10.5, 20.5, 30.5, 41.5], (100, 100)) == (20, 42, 10, 30)  # round half to even
    assert box_slices([10.4, 20.6, 30.5, 41.5], (100, 100), margin=5) == (16, 47, 5, 35)
    assert box_slices([-7.2, -3.0, 130.0, 60.0], (80, 120)) == (0, 60, 0, 120)
    with pytest.raises(ValueError, match="empty crop"):
        box_slices([200.0, 200.0, 300.0, 300.0], (80, 120))


def test_box_crop_is_the_slice_and_the_resize_is_torch_bilinear(face):
    photo, box, _ = face
    top, bottom, left, right = box_slices(box, photo.shape[:2], margin=3)
    raw = box_crop(photo, box, margin=3)
    np.testing.assert_array_equal(raw.image, photo[top:bottom, left:right])
    resized = box_crop(photo, box, margin=3, size=112)
    want = interpolate(jnp.asarray(photo[None, top:bottom, left:right], jnp.float32), (112, 112), "bilinear")
    np.testing.assert_allclose(resized.image, np.asarray(want)[0], atol=1e-2)


@pytest.mark.parametrize("size", [112, 160])
def test_paste_back_of_an_unmodified_crop_gives_the_photo_back(face, size):
    photo, _, landmarks = face
    crop = align_face(photo, landmarks, size)
    np.testing.assert_array_equal(paste_back(photo, crop.image, crop.matrix), photo)
    rounded = np.rint(crop.image)  # a crop that went through uint8 on its way
    assert np.abs(paste_back(photo, rounded, crop.matrix).astype(int) - photo).max() <= 1


def _at_crop_scale(photo, landmarks):
    """Resize the photo so the face is as large as in the 112 crop (a paste-back without resolution loss)."""
    scale = np.sqrt(abs(np.linalg.det(align_face(photo, landmarks).matrix[:, :2])))
    h, w = photo.shape[:2]
    small = np.asarray(Image.fromarray(photo).resize((round(w * scale), round(h * scale)), Image.BICUBIC))
    return small, landmarks * np.array([round(w * scale) / w, round(h * scale) / h])


def test_paste_back_replace_changes_only_the_face_and_is_near_identical(face):
    photo, small_marks = _at_crop_scale(face[0], face[2])
    crop = align_face(photo, small_marks, 112)
    out = paste_back(photo, crop.image, crop.matrix, mode="replace")
    changed = np.abs(out.astype(int) - photo).max(axis=-1) > 0
    footprint = warp_affine(np.ones((112, 112, 1)), _inverse(crop.matrix), photo.shape[:2])[..., 0] > 0
    assert not (changed & ~footprint).any()  # outside the crop's footprint: bit for bit
    inside = np.abs(out.astype(float) - photo)[footprint]
    assert inside.mean() < 4.0, inside.mean()  # only bilinear resampling twice at scale ~1


def _inverse(matrix):
    return np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]


def test_paste_back_feathers_the_seam(face):
    photo, _, landmarks = face
    photo = np.full_like(photo, 100)
    crop = align_face(photo, landmarks, 112)
    out = paste_back(photo, crop.image + 50.0, crop.matrix, feather=0.2).astype(int) - 100
    centre = np.rint(_inverse(crop.matrix) @ np.array([56.0, 56.0, 1.0])).astype(int)
    assert out[centre[1], centre[0]].min() == 50
    assert out.min() == 0 and out.max() == 50
    # walking from the centre to the footprint's edge, the change falls smoothly from 50 to 0
    step = _inverse(crop.matrix)[:, 0]  # photo displacement per crop pixel along crop x
    profile = [out[tuple(np.rint(centre[::-1] + k * step[::-1]).astype(int))][0] for k in range(0, 57)]
    assert profile[0] == 50 and profile[-1] <= 1
    assert all(a >= b - 1 for a, b in zip(profile, profile[1:]))
    assert len({v for v in profile if 0 < v < 50}) >= 5  # several intermediate values: a ramp, not a step


def test_paste_back_keeps_float_photos_float(face):
    photo, _, landmarks = face
    photo = photo.astype(np.float32) / 255
    crop = align_face(photo, landmarks)
    out = paste_back(photo, crop.image, crop.matrix)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, photo, atol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        paste_back(photo, crop.image, crop.matrix, mode="blend")


@pytest.mark.parametrize("mode", ["delta", "replace"])
def test_paste_back_ignores_crop_pixels_from_outside_the_photo(face, mode):
    """Crop pixels sampled (partly) from outside the photo (zeros) are never pasted: the photo edge stays clean."""
    photo, _, landmarks = face
    cut = np.ascontiguousarray(photo[55:, 170:])  # the face now touches the top-left corner
    small, marks = _at_crop_scale(cut, landmarks - np.array([170.0, 55.0]))
    crop = align_face(small, marks, 112)
    v, u = np.mgrid[0:112, 0:112]
    src = _inverse(crop.matrix) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    h, w = small.shape[:2]
    outside = ~((src[0] >= 0) & (src[0] <= w - 1) & (src[1] >= 0) & (src[1] <= h - 1)).reshape(112, 112)
    assert outside.sum() > 300  # the crop does reach past the photo
    brighter = crop.image + 30.0
    other = brighter.copy()
    other[outside] = 255.0  # whatever those pixels hold must not matter
    out = paste_back(small, brighter, crop.matrix, mode=mode)
    np.testing.assert_array_equal(out, paste_back(small, other, crop.matrix, mode=mode))
    assert (out.astype(int) - small).max() >= 29  # the face itself did change
