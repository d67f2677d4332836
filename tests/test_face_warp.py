"""Full-resolution face geometry: ROI, mask, differentiable warp to the template, delta grid."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.photo_corpus import astronaut
from helpers.photo_corpus import placed_face as _face
from helpers.tiny_recogniser import tiny_surrogate
from PIL import Image

from jaxprotect.detect.align import align_face, similarity_transform, template
from jaxprotect.ops.face_warp import (
    DeltaGrid,
    delta_grid,
    downscale_factor,
    extract_roi,
    face_ellipse,
    face_mask,
    face_roi,
    insert_roi,
    roi_matrix,
    template_footprint,
    tent_downsample,
    upsample_linear,
    warp_to_template,
)
from jaxprotect.ops.perceptual import budget_violation, project_delta, texture_budget
from jaxprotect.ops.resize import interpolate


@pytest.fixture(scope="module")
def photo():
    return astronaut()


def test_roi_holds_the_mask_and_the_template_footprint_on_a_16px_grid(photo):
    lm, box = _face(1.1, 0.15, (230, 150))
    roi = face_roi(photo.shape[:2], box, lm, 112)
    assert roi.top % 16 == 0 and roi.left % 16 == 0
    assert roi.bottom % 16 == 0 or roi.bottom == photo.shape[0]
    assert roi.right % 16 == 0 or roi.right == photo.shape[1]
    matrix = similarity_transform(lm, template(112))
    for x, y in template_footprint(matrix, 112):
        assert roi.left <= x <= roi.right and roi.top <= y <= roi.bottom
    mask = face_mask(roi, box, lm)
    assert mask.shape == roi.shape + (1,) and mask.dtype == np.float32
    assert mask.min() == 0.0 and mask.max() == 1.0
    # zero all around the ROI's border (the ROI was not clipped by the photo here)
    assert mask[0].max() == mask[-1].max() == mask[:, 0].max() == mask[:, -1].max() == 0.0
    e = face_ellipse(box, lm)
    cy, cx = int(round(e.centre[1])) - roi.top, int(round(e.centre[0])) - roi.left
    assert mask[cy, cx, 0] == 1.0


def test_mask_turns_with_the_eye_line(photo):
    lm, box = _face(1.0, 0.0, (256, 256))
    upright = face_mask(face_roi((512, 512), box, None, None), box, None)
    lm_t, _ = _face(1.0, math.pi / 2, (256, 256))
    turned_roi = face_roi((512, 512), box, lm_t, None)
    turned = face_mask(turned_roi, box, lm_t)
    # a quarter turn swaps the ellipse's extent along x and y
    def extent(m):
        rows, cols = np.nonzero(m[..., 0] > 0.5)
        return rows.max() - rows.min(), cols.max() - cols.min()

    h0, w0 = extent(upright)
    h1, w1 = extent(turned)
    assert h0 > w0 and w1 > h1
    assert abs(h0 - w1) <= 2 and abs(w0 - h1) <= 2


def test_extract_and_insert_change_nothing_outside_the_roi(photo):
    lm, box = _face(1.1, 0.1, (230, 150))
    roi = face_roi(photo.shape[:2], box, lm, 112)
    before = photo.copy()
    part = extract_roi(photo, roi)
    part[:] = 0  # a copy: the photo is untouched
    np.testing.assert_array_equal(photo, before)
    new = insert_roi(photo, roi, np.full(roi.shape + (3,), 7, np.uint8))
    np.testing.assert_array_equal(photo, before)
    outside = np.ones(photo.shape[:2], bool)
    outside[roi.slices] = False
    np.testing.assert_array_equal(new[outside], photo[outside])
    assert np.all(new[roi.slices] == 7)
    jnew = insert_roi(jnp.asarray(photo, jnp.float32), roi, jnp.zeros(roi.shape + (3,)))
    np.testing.assert_array_equal(np.asarray(jnew)[outside], photo[outside].astype(np.float32))
    with pytest.raises(ValueError, match="do not fit"):
        insert_roi(photo, roi, np.zeros((3, 3, 3), np.uint8))


@pytest.mark.parametrize("size", [112, 160])
def test_warp_forward_equals_align_face(photo, size):
    for scale, angle, centre in ((1.1, 0.15, (230, 150)), (0.7, -0.3, (300, 330)), (2.0, 0.05, (256, 200))):
        lm, box = _face(scale, angle, centre)
        roi = face_roi(photo.shape[:2], box, lm, size)
        crop = align_face(photo, lm, size)
        out = np.asarray(jax.jit(warp_to_template, static_argnames=("size", "antialias"))(
            extract_roi(photo, roi).astype(np.float32), roi_matrix(crop.matrix, roi), size=size))
        assert out.shape == (size, size, 3)
        np.testing.assert_allclose(out, crop.image, atol=0.02)  # float32 vs float64 geometry


def test_warp_gradient_matches_finite_differences(photo):
    lm, box = _face(1.0, 0.2, (230, 160))
    roi = face_roi(photo.shape[:2], box, lm, 112)
    matrix = roi_matrix(align_face(photo, lm, 112).matrix, roi)
    x = jnp.asarray(extract_roi(photo, roi), jnp.float32)
    w = jnp.asarray(np.random.default_rng(0).normal(size=(112, 112, 3)), jnp.float32)

    @jax.jit
    def loss(img):
        return jnp.sum(w * jnp.tanh(warp_to_template(img, matrix, 112) / 64.0 - 2.0))

    g = jax.grad(loss)(x)
    rng = np.random.default_rng(1)
    for _ in range(3):
        v = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
        h = 1.0
        fd = (float(loss(x + h * v)) - float(loss(x - h * v))) / (2 * h)
        assert float(jnp.sum(g * v)) == pytest.approx(fd, rel=2e-2, abs=1e-2)


def test_antialias_reaches_every_pixel_of_a_large_face():
    big = np.asarray(Image.fromarray(astronaut()).resize((2048, 2048), Image.BICUBIC))
    lm, box = _face(5.0, 0.1, (900, 600))  # a ~400 px wide face, 0.2 template px per photo px
    roi = face_roi(big.shape[:2], box, lm, 112)
    matrix = roi_matrix(align_face(big, lm, 112).matrix, roi)
    assert downscale_factor(matrix) == pytest.approx(0.2, rel=1e-6)
    x = jnp.asarray(extract_roi(big, roi), jnp.float32)
    inside = face_mask(roi, box, lm)[..., 0] > 0.5

    def grad(antialias):
        g = jax.jit(jax.grad(lambda im: jnp.sum(warp_to_template(im, matrix, 112, antialias=antialias) ** 2)))(x)
        return np.asarray(g)

    point, smooth = grad(False), grad(True)
    assert (np.abs(point).sum(-1)[inside] > 0).mean() < 0.2  # about one pixel in (1/0.2)^2 gets a gradient
    assert (np.abs(smooth).sum(-1)[inside] > 0).mean() > 0.95
    # smooth, not blocky: neighbours differ (a k x k box prefilter gives equal gradients in each block)
    # but correlate strongly
    a, b = smooth[:, :-1][inside[:, :-1]], smooth[:, 1:][inside[:, :-1]]
    assert np.mean(np.all(a == b, axis=-1)) < 0.05
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    aa = np.asarray(warp_to_template(x, matrix, 112, antialias=True))
    assert np.abs(aa - align_face(big, lm, 112).image).mean() < 6.0  # the same face, filtered


@pytest.mark.parametrize("k", [2, 3, 7])
def test_tent_downsample_keeps_ramps_and_constants(k):
    ramp = jnp.asarray(np.tile(np.arange(40, dtype=np.float32)[None, :, None], (9 * k, 1, 2)))
    out = np.asarray(tent_downsample(ramp, k))
    assert out.shape == (9, -(-40 // k), 2)
    centres = k * np.arange(out.shape[1]) + (k - 1) / 2
    np.testing.assert_allclose(out[2, 1:-1, 0], centres[1:-1], atol=1e-4)  # each output sits at its centre
    np.testing.assert_allclose(np.asarray(tent_downsample(jnp.full((13, 11, 3), 7.0), k)), 7.0, atol=1e-5)


def test_upsample_linear_is_torch_bilinear():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 7, 3)), jnp.float32)
    for f in (1, 3):
        ref = interpolate(x[None], (5 * f, 7 * f), mode="bilinear")[0]
        np.testing.assert_allclose(np.asarray(upsample_linear(x, f)), np.asarray(ref), atol=1e-5)


def test_delta_grid_policy():
    lm, box = _face(9.0, 0.0, (1500, 1500))
    roi = face_roi((3000, 4000), box, lm, 112)
    grid = delta_grid(roi)
    assert max(roi.shape) > 1024 and grid.factor == -(-max(roi.shape) // 1024)
    assert max(grid.shape) <= 1024
    small = DeltaGrid((300, 200))
    assert small.factor == 1 and small.shape == (300, 200)
    coarse = jnp.ones(grid.shape + (3,))
    assert grid.to_roi(coarse).shape == roi.shape + (3,)


def test_full_resolution_step_stays_inside_the_mask_and_the_budget(photo):
    """A few signed-gradient steps through the warp: only the face mask changes, within the budget."""
    surrogate, params = tiny_surrogate(112)
    lm, box = _face(1.1, 0.1, (230, 150))
    roi = face_roi(photo.shape[:2], box, lm, 112)
    matrix = roi_matrix(align_face(photo, lm, 112).matrix, roi)
    x = jnp.asarray(extract_roi(photo, roi), jnp.float32)
    mask = jnp.asarray(face_mask(roi, box, lm))
    eps = jax.jit(texture_budget)(x[None], mask=mask[None])[0]
    clean = jax.jit(surrogate.apply)(params, warp_to_template(x, matrix, 112)[None] / 127.5 - 1.0)

    @jax.jit
    def step(delta):
        def loss(d):
            emb = surrogate.apply(params, warp_to_template(x + d, matrix, 112)[None] / 127.5 - 1.0)
            return jnp.sum(emb * clean) / (jnp.linalg.norm(emb) * jnp.linalg.norm(clean))

        value, g = jax.value_and_grad(loss)(delta)
        return project_delta(delta - 1.0 * jnp.sign(g), x, eps, 2.0), value

    delta = jnp.zeros_like(x)
    values = []
    for _ in range(4):
        delta, v = step(delta)
        values.append(float(v))
    assert values[-1] < values[0]
    assert max(budget_violation(delta, x, eps, 2.0).values()) < 1e-4
    outside = np.asarray(mask)[..., 0] == 0
    assert np.all(np.asarray(delta)[outside] == 0)
    assert np.abs(np.asarray(delta)).max() > 0.5
    out = insert_roi(photo, roi, np.clip(np.rint(np.asarray(x + delta)), 0, 255))
    untouched = np.ones(photo.shape[:2], bool)
    untouched[roi.slices] = outside
    np.testing.assert_array_equal(out[untouched], photo[untouched])
