"""The differentiable JPEG approximation against Pillow's real JPEG, the resize round trip and EOT."""
from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from jaxprotect.ops.jpeg import (
    EOT_TRANSFORMS,
    EOTConfig,
    block_dct,
    block_idct,
    dct_matrix,
    diff_round,
    eot_draw,
    eot_transform,
    fancy_upsample,
    jpeg_approx,
    pillow_roundtrip,
    quant_tables,
    resize_roundtrip,
)
from jaxprotect.ops.resize import interpolate
from helpers.golden import ASSETS
from helpers.photo_corpus import astronaut

SIZE = (200, 232)  # not a multiple of 16: exercises the edge padding
_approx = jax.jit(jpeg_approx, static_argnames=("rounding", "subsampling", "round_samples"))


def _center(photo: np.ndarray, size=SIZE) -> np.ndarray:
    """A size[0] x size[1] centre crop after shrinking the photo to ~2x that (keeps faces in view)."""
    im = Image.fromarray(photo)
    scale = 2 * max(size) / max(im.size)
    if scale < 1:
        im = im.resize((round(im.size[0] * scale), round(im.size[1] * scale)), Image.BOX)
    a = np.asarray(im)
    top, left = (a.shape[0] - size[0]) // 2, (a.shape[1] - size[1]) // 2
    return np.ascontiguousarray(a[top:top + size[0], left:left + size[1]])


def _generated(seed: int) -> np.ndarray:
    """A smooth colour field with edges and noise (no photo needed)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE[0], 0:SIZE[1]].astype(np.float64)
    base = np.stack([yy * 1.2, xx, 128 + 60 * np.sin(xx / 7 + yy / 11)], -1)
    base[60:140, 80:160] = [220, 40, 60]  # a saturated block with sharp edges
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images():
    """Generated images always, the astronaut and up to 3 real deepface photos when present."""
    out = {f"generated{s}": _generated(s) for s in (0, 1)}
    out["astronaut"] = _center(astronaut())
    folder = ASSETS / "faces" / "deepface"
    for name in ("img1.jpg", "couple.jpg", "selfie-many-people.jpg"):
        if (folder / name).exists():
            out[name] = _center(np.asarray(Image.open(folder / name).convert("RGB")))
    return out


@pytest.mark.parametrize("quality", [1, 10, 25, 50, 75, 90, 95, 100])
def test_quant_tables_equal_the_tables_pillow_writes(quality):
    buf = io.BytesIO()
    Image.fromarray(_generated(0)).save(buf, "JPEG", quality=quality)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        written = im.quantization  # natural order (Pillow >= 8)
        assert JpegImagePlugin.get_sampling(im) == 2, "Pillow's default is 4:2:0 at every quality"
    luma, chroma = quant_tables(quality)
    np.testing.assert_array_equal(np.asarray(luma).ravel(), np.array(written[0]))
    np.testing.assert_array_equal(np.asarray(chroma).ravel(), np.array(written[1]))


def test_quant_tables_under_jit_and_dct_is_orthonormal():
    traced = jax.jit(lambda q: quant_tables(q)[0])(jnp.int32(37))
    np.testing.assert_array_equal(np.asarray(traced), np.asarray(quant_tables(37)[0]))
    c = dct_matrix()
    np.testing.assert_allclose(c @ c.T, np.eye(8), atol=1e-6)
    x = jnp.asarray(np.random.default_rng(0).uniform(-128, 127, (2, 16, 24)), jnp.float32)
    coef = block_dct(x)
    assert coef.shape == (2, 2, 3, 8, 8)
    np.testing.assert_allclose(np.asarray(coef[..., 0, 0]), np.asarray(x).reshape(2, 2, 8, 3, 8).mean((2, 4)) * 8,
                               atol=1e-3)  # DC = 8 x block mean
    np.testing.assert_allclose(np.asarray(block_idct(coef)), np.asarray(x), atol=1e-3)


def test_fancy_upsample_is_torch_bilinear_x2():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 7, 2)), jnp.float32)
    np.testing.assert_allclose(np.asarray(fancy_upsample(x)), np.asarray(interpolate(x, (10, 14), mode="bilinear")),
                               atol=1e-5)


def test_diff_round_forward_and_gradients():
    x = jnp.array([0.2, 0.5, 1.4, -2.7])
    np.testing.assert_array_equal(np.asarray(diff_round(x, "ste")), np.round(np.asarray(x)))
    np.testing.assert_allclose(np.asarray(jax.grad(lambda v: diff_round(v, "ste").sum())(x)), 1.0)
    cubic = np.asarray(diff_round(x, "cubic"))
    np.testing.assert_allclose(cubic, np.round(np.asarray(x)) + (np.asarray(x) - np.round(np.asarray(x))) ** 3,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.grad(lambda v: diff_round(v, "cubic").sum())(x)),
                               3 * (np.asarray(x) - np.round(np.asarray(x))) ** 2, atol=1e-6)
    with pytest.raises(ValueError, match="rounding"):
        diff_round(x, "floor")


# Measured on these 200x232 images (generated, astronaut, img1, couple, selfie), q 90/75/50:
#   round_samples=False: error correlation 0.908-0.982, mean |approx - pil| 0.78-1.12, p99 3.9-6.8,
#                        mean |approx - pil| / mean |pil - x| 0.17-0.42;
#   round_samples=True:  correlation 0.941-0.989, mean 0.37-0.69, p99 3-7, ratio 0.09-0.26.
# The bounds leave headroom for other photos and library versions.
BOUNDS = {False: dict(corr=0.88, mean=1.5, p99=9.0, vs_identity=0.6),
          True: dict(corr=0.92, mean=0.9, p99=9.0, vs_identity=0.4)}


@pytest.mark.parametrize("round_samples", [False, True])
@pytest.mark.parametrize("quality", [90, 75, 50])
def test_approximation_tracks_pillows_real_jpeg(images, quality, round_samples):
    bound = BOUNDS[round_samples]
    for name, img in images.items():
        pil = pillow_roundtrip(img, quality).astype(np.float64)
        approx = np.asarray(_approx(jnp.asarray(img, jnp.float32)[None], quality, rounding="ste",
                                    round_samples=round_samples)[0], np.float64)
        x = img.astype(np.float64)
        corr = np.corrcoef((approx - x).ravel(), (pil - x).ravel())[0, 1]
        diff = np.abs(approx - pil)
        what = f"{name} q{quality}: corr {corr:.3f}, mean {diff.mean():.3f}, p99 {np.percentile(diff, 99):.2f}"
        assert corr > bound["corr"], what
        assert diff.mean() < bound["mean"], what
        assert np.percentile(diff, 99) < bound["p99"], what
        # the approximation is much closer to the real JPEG than the uncompressed image is
        assert diff.mean() < bound["vs_identity"] * np.abs(pil - x).mean(), what
        assert approx.min() >= 0 and approx.max() <= 255


def test_cubic_rounding_also_tracks_pillow(images):
    img = images["astronaut"]
    pil = pillow_roundtrip(img, 75).astype(np.float64)
    approx = np.asarray(_approx(jnp.asarray(img, jnp.float32)[None], 75, rounding="cubic")[0], np.float64)
    x = img.astype(np.float64)
    assert np.corrcoef((approx - x).ravel(), (pil - x).ravel())[0, 1] > 0.9
    assert np.abs(approx - pil).mean() < 1.6


def test_444_matches_pillow_without_subsampling(images):
    img = images["generated0"]
    pil = pillow_roundtrip(img, 75, subsampling=0).astype(np.float64)
    approx = np.asarray(_approx(jnp.asarray(img, jnp.float32)[None], 75, subsampling="4:4:4",
                                round_samples=True)[0])
    assert np.abs(approx - pil).mean() < 0.6
    with pytest.raises(ValueError, match="subsampling"):
        jpeg_approx(jnp.zeros((1, 16, 16, 3)), 75, subsampling="4:1:1")


@pytest.mark.parametrize("rounding", ["ste", "cubic"])
def test_gradient_is_finite_and_moves_the_real_jpeg(images, rounding):
    """A signed-gradient step on <w, jpeg_approx(x)> raises <w, pillow_jpeg(x)>: the gradient is useful."""
    img = images["astronaut"]
    x = jnp.asarray(img, jnp.float32)[None]
    rng = np.random.default_rng(0)
    w = jnp.asarray(interpolate(jnp.asarray(rng.normal(size=(1, 25, 29, 3)), jnp.float32), SIZE, mode="bilinear"))

    def loss(v):
        return jnp.sum(w * jpeg_approx(v, 75, rounding=rounding))

    g = np.asarray(jax.jit(jax.grad(loss))(x))
    assert np.isfinite(g).all()
    assert np.mean(np.abs(g) > 1e-6) > 0.5  # reaches most pixels
    step = 4.0 * np.sign(g[0])

    def real(v):
        return float(np.sum(np.asarray(w[0]) * pillow_roundtrip(np.clip(v, 0, 255).astype(np.uint8), 75)))

    up, down = real(img + step), real(img - step)
    assert up > real(img) > down


def test_resize_roundtrip_matches_explicit_resizes():
    x = jnp.asarray(astronaut()[100:196, 200:328], jnp.float32)[None]
    resize = jax.jit(resize_roundtrip, static_argnames="down")  # the factor is traced: one compile per mode
    half = x.reshape(1, 48, 2, 64, 2, 3).mean((2, 4))
    np.testing.assert_allclose(np.asarray(resize(x, 0.5, down="area")),
                               np.asarray(interpolate(half, (96, 128), mode="bilinear")), atol=1e-3)
    np.testing.assert_allclose(np.asarray(resize(x, 1.0, down="area")), np.asarray(x), atol=1e-3)
    m = (round(96 * 0.37), round(128 * 0.37))
    ref = interpolate(interpolate(x, m, mode="bilinear"), (96, 128), mode="bilinear")
    np.testing.assert_allclose(np.asarray(resize(x, 0.37, down="bilinear")), np.asarray(ref), atol=1e-2)


def test_eot_draws_follow_the_config_and_every_branch_has_a_gradient():
    config = EOTConfig(probs=(1, 1, 1, 1), jpeg_quality=(60, 70), resize_scale=(0.5, 0.8))
    keys = jax.random.split(jax.random.key(0), 400)
    draws = jax.jit(jax.vmap(lambda k: eot_draw(k, config)))(keys)
    counts = np.bincount(np.asarray(draws.kind), minlength=len(EOT_TRANSFORMS))
    assert counts.min() > 60, counts  # 100 expected each
    assert np.all((np.asarray(draws.quality) >= 60) & (np.asarray(draws.quality) <= 70))
    assert np.all((np.asarray(draws.scale) >= 0.5) & (np.asarray(draws.scale) <= 0.8))
    only_jpeg = EOTConfig(probs=(0, 1, 0, 0), jpeg_quality=(75, 75))
    assert np.all(np.asarray(jax.jit(jax.vmap(lambda k: eot_draw(k, only_jpeg)))(keys[:20]).kind) == 1)

    x = jnp.asarray(astronaut()[100:148, 200:264], jnp.float32)[None]
    f = jax.jit(lambda k, v: eot_transform(k, v, config))
    grad = jax.jit(jax.grad(lambda v, k: jnp.sum(jnp.sin(eot_transform(k, v, config) / 20.0))))
    for kind in range(len(EOT_TRANSFORMS)):
        k = keys[int(np.argmax(np.asarray(draws.kind) == kind))]
        y = f(k, x)
        assert y.shape == x.shape
        if kind == 0:
            np.testing.assert_array_equal(np.asarray(y), np.asarray(x))
        else:
            assert float(jnp.abs(y - x).mean()) > 0.5, EOT_TRANSFORMS[kind]
        g = np.asarray(grad(x, k))
        assert np.isfinite(g).all() and np.abs(g).max() > 0, EOT_TRANSFORMS[kind]


@pytest.mark.parametrize("bad", [dict(probs=(1, 1)), dict(probs=(0, 0, 0, 0)), dict(jpeg_quality=(0, 50)),
                                 dict(resize_scale=(0.5, 1.5)), dict(rounding="floor")])
def test_eot_config_refuses_bad_values(bad):
    with pytest.raises(ValueError):
        EOTConfig(**bad)


def test_pillow_roundtrip_refuses_float_input():
    with pytest.raises(ValueError, match="uint8"):
        pillow_roundtrip(np.zeros((8, 8, 3), np.float32))
