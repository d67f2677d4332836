"""RandomPerspective (torchvision tensor path) against an independent numpy implementation.

The reference solves the homography with OpenCV's ``getPerspectiveTransform`` (float64) and
samples with a plain numpy bilinear ``grid_sample`` (zero padding, align_corners=False) plus
torchvision's fill blend ``img * mask + (1 - mask) * fill``, written from the formulas.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprotect.methods.clip2protect import perspective as P
from jaxprotect.methods.clip2protect.perspective import endpoint_bands, start_points

# eager jnp dispatches op by op; everything below runs compiled, as inside the search step
perspective_coeffs = jax.jit(P.perspective_coeffs, static_argnums=(2, 3))
warp_perspective = jax.jit(P.warp_perspective)
random_endpoints = jax.jit(P.random_endpoints, static_argnums=(1, 2))
random_perspective = jax.jit(P.random_perspective)

cv2 = pytest.importorskip("cv2")


def _reference(image: np.ndarray, startpoints, endpoints, fill: float) -> np.ndarray:
    """float64 numpy: output pixel centre -> input point by the homography end -> start."""
    h, w, c = image.shape
    m = cv2.getPerspectiveTransform(np.float32(endpoints), np.float32(startpoints)).astype(np.float64)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    den = m[2, 0] * xs + m[2, 1] * ys + m[2, 2]
    x_in = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]) / den
    y_in = (m[1, 0] * xs + m[1, 1] * ys + m[1, 2]) / den
    # grid normalised by (0.5 w) - 1 then unnormalised with align_corners=False: index = x_in - 0.5
    ix, iy = x_in - 0.5, y_in - 0.5
    x0, y0 = np.floor(ix), np.floor(iy)
    out = np.zeros((h, w, c))
    mask = np.zeros((h, w))
    for dx in (0, 1):
        for dy in (0, 1):
            cx, cy = x0 + dx, y0 + dy
            wgt = (1 - np.abs(ix - cx)) * (1 - np.abs(iy - cy))
            ok = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
            val = image[np.clip(cy, 0, h - 1).astype(int), np.clip(cx, 0, w - 1).astype(int)]
            out += np.where(ok, wgt, 0)[..., None] * val
            mask += np.where(ok, wgt, 0)
    return out * mask[..., None] + (1 - mask[..., None]) * fill


@pytest.mark.parametrize("h,w", [(40, 40), (37, 52)])
@pytest.mark.parametrize("fill", [0.0, 0.3])
def test_warp_matches_independent_reference(h, w, fill):
    rng = np.random.default_rng(h * w)
    image = rng.uniform(0, 1, (h, w, 3)).astype(np.float32)
    bw, bh = endpoint_bands(h, w, 0.5)
    ends = np.array([[3, 2], [w - 4, bh - 1], [w - bw, h - 1], [bw - 1, h - 3]])
    start = np.asarray(start_points(h, w))
    coeffs = perspective_coeffs(start, ends, h, w)
    got = np.asarray(warp_perspective(jnp.asarray(image), coeffs, fill))
    want = _reference(image.astype(np.float64), start, ends, fill)
    # float32 sample coordinates (as torchvision) on a white-noise image: |d value| <= ~1 x |d coord| ~ 1e-5
    np.testing.assert_allclose(got, want, atol=5e-5)
    # the batch form gives every image the same warp
    batch = np.asarray(warp_perspective(jnp.asarray(np.stack([image, image[::-1]])), coeffs, fill))
    np.testing.assert_allclose(batch[0], got, atol=1e-6)


def test_coefficients_match_float64_solve():
    h, w = 1024, 1024
    start = np.asarray(start_points(h, w))
    ends = np.array([[120, 7], [1000, 200], [830, 1023], [255, 900]])
    m = cv2.getPerspectiveTransform(np.float32(ends), np.float32(start)).astype(np.float64)
    want = (m / m[2, 2]).reshape(9)[:8]
    got = np.asarray(perspective_coeffs(start, ends, h, w), np.float64)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-9)


def test_identity_corners_give_the_image_back():
    image = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 24, 24, 3)), jnp.float32)
    start = start_points(24, 24)
    out = warp_perspective(image, perspective_coeffs(start, start, 24, 24))
    np.testing.assert_allclose(np.asarray(out), np.asarray(image), atol=1e-5)


def test_corner_draw_stays_in_torchvision_bands_and_follows_the_key():
    h, w = 1024, 768
    bw, bh = endpoint_bands(h, w, 0.5)
    assert (bw, bh) == (int(0.5 * 384) + 1, int(0.5 * 512) + 1)
    keys = jax.random.split(jax.random.key(0), 300)
    draws = np.asarray(jax.jit(jax.vmap(lambda k: P.random_endpoints(k, h, w)))(keys))
    tl, tr, br, bl = draws[:, 0], draws[:, 1], draws[:, 2], draws[:, 3]
    assert tl[:, 0].min() >= 0 and tl[:, 0].max() < bw and tl[:, 1].max() < bh
    assert tr[:, 0].min() >= w - bw and tr[:, 0].max() <= w - 1 and tr[:, 1].max() < bh
    assert br[:, 0].min() >= w - bw and br[:, 1].min() >= h - bh and br[:, 1].max() <= h - 1
    assert bl[:, 0].max() < bw and bl[:, 1].min() >= h - bh
    assert len({tuple(d.ravel()) for d in draws}) > 290  # fresh corners per key
    np.testing.assert_array_equal(random_endpoints(jax.random.key(5), h, w), random_endpoints(jax.random.key(5), h, w))


def test_random_perspective_is_differentiable_and_keyed():
    img = jnp.asarray(np.random.default_rng(1).uniform(size=(1, 32, 32, 3)), jnp.float32)
    a = random_perspective(jax.random.key(3), img)
    np.testing.assert_array_equal(a, random_perspective(jax.random.key(3), img))
    assert not np.array_equal(np.asarray(a), np.asarray(random_perspective(jax.random.key(4), img)))
    g = jax.jit(jax.grad(lambda x: jnp.sum(P.random_perspective(jax.random.key(3), x) ** 2)))(img)
    assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).sum() > 0
