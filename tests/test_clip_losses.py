"""Clip2Protect's CLIP preprocessing, NCE loss and directional loss (parity with the NCE golden: test_golden_parity)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers.clip_helpers import tiny_openai_state_dict

from jaxprotect.losses.clip_losses import (
    ClipTextFeatures,
    directional_loss,
    directional_loss_from_features,
    nce_loss,
    nce_loss_from_features,
    precompute_text_features,
    safe_normalize,
)
from jaxprotect.losses.preprocess import CLIP_MEAN, CLIP_STD, clip_preprocess
from jaxprotect.models.clip import load_clip


def _nhwc(x):
    return np.transpose(np.asarray(x), (0, 2, 3, 1))


@pytest.fixture(scope="module")
def tiny():
    net = load_clip(tiny_openai_state_dict(seed=7))
    return net, precompute_text_features(net, "face", "red lipstick")


def _tiny_pair(seed=0, n=1, size=40):
    rng = np.random.default_rng(seed)
    src = rng.random((1, size, size, 3)).astype(np.float32)
    tgt = np.clip(src + 0.2 * rng.standard_normal((n, size, size, 3)), 0, 1).astype(np.float32)
    return src, tgt


# ---------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("shape", [(1, 64, 48, 3), (2, 50, 90, 3), (1, 32, 32, 3)])
def test_correct_preprocess_matches_torch(shape):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).random(shape).astype(np.float32)
    h, w = shape[1:3]
    size = 32
    out = (int(size * h / w), size) if w < h else (size, int(size * w / h))
    t = torch.from_numpy(np.transpose(x, (0, 3, 1, 2)).copy())
    if (h, w) != out:
        t = torch.nn.functional.interpolate(t, size=out, mode="bicubic", align_corners=False)
    top, left = int(round((out[0] - size) / 2.0)), int(round((out[1] - size) / 2.0))
    t = t[:, :, top : top + size, left : left + size]
    ref = (t - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]
    got = np.asarray(clip_preprocess(x, "correct", size=size))
    np.testing.assert_allclose(got, _nhwc(ref.numpy()), atol=1e-5, rtol=0)  # float32 rounding x 1/std
    faithful = np.asarray(clip_preprocess(2.0 * x - 1.0, "faithful", size=size))
    np.testing.assert_allclose(faithful, got, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- loss maths (tiny CLIP)


def _upstream_infonce_loss(torch, text, i_s, i_t):
    """criteria/nce_loss.py infonce_loss + criteria/infonce.py, transcribed on given features."""
    F = torch.nn.functional
    src_text, tgt_text_all, src_img, tgt_img = (
        torch.from_numpy(np.array(v, np.float32)) for v in (text.source, text.target, i_s, i_t)
    )
    target_text = tgt_text_all.mean(axis=0, keepdim=True).repeat(tgt_img.shape[0], 1)
    query = tgt_img - src_img
    query = query / query.norm(dim=-1, keepdim=True)
    direction = (tgt_text_all - src_text).mean(axis=0, keepdim=True)
    pos1 = (direction / direction.norm(dim=-1, keepdim=True)).repeat(tgt_img.shape[0], 1)
    pos2 = target_text - src_img
    pos2 = pos2 / pos2.norm(dim=-1, keepdim=True)
    neg = src_text - src_img[:1]
    neg = neg / neg.norm(dim=-1, keepdim=True)
    q, p, n = (F.normalize(v, dim=-1) for v in (query.repeat(2, 1), torch.cat([pos1, pos2], 0), neg))
    logits = torch.cat([torch.sum(q * p, dim=1, keepdim=True), q @ n.T], dim=1)
    return F.cross_entropy(logits / 0.1, torch.zeros(len(logits), dtype=torch.long)).item()


@pytest.mark.parametrize("n_target", [1, 3])
def test_nce_from_features_matches_upstream_formula(tiny, n_target):
    torch = pytest.importorskip("torch")
    _, text = tiny
    rng = np.random.default_rng(n_target)
    d = text.source.shape[1]
    i_s = np.asarray(safe_normalize(jnp.asarray(rng.standard_normal((1, d)), jnp.float32)))
    i_t = np.asarray(safe_normalize(jnp.asarray(i_s + 0.3 * rng.standard_normal((n_target, d)), jnp.float32)))
    got = float(jax.jit(nce_loss_from_features)(text, i_s, i_t))
    assert got == pytest.approx(_upstream_infonce_loss(torch, text, i_s, i_t), abs=1e-5)


def test_text_features_are_precomputed_unit_vectors(tiny):
    net, text = tiny
    assert isinstance(text, ClipTextFeatures)
    assert text.source.shape == (79, 32) and text.target.shape == (79, 32) and text.direction.shape == (1, 32)
    for v in text:
        np.testing.assert_allclose(np.linalg.norm(np.asarray(v), axis=-1), 1.0, atol=1e-5)
    raw = np.asarray(net.encode_text(net.tokenize(["a bad photo of a face."])))
    np.testing.assert_allclose(np.asarray(text.source[0]), raw[0] / np.linalg.norm(raw[0]), atol=1e-6)


def test_identical_images_give_finite_loss_and_zero_gradient(tiny):
    net, text = tiny
    src, _ = _tiny_pair()
    for loss_fn, expected in ((nce_loss, np.log(80.0)), (directional_loss, 1.0)):
        value, grad = jax.jit(jax.value_and_grad(loss_fn, argnums=3))(net.params, text, src, src)
        assert np.isfinite(float(value)) and float(value) == pytest.approx(expected, abs=1e-5)
        assert np.all(np.isfinite(np.asarray(grad))) and not np.any(np.asarray(grad))
    # the source again, inside a batch of another size (float noise in its features stays below eps)
    _, other = _tiny_pair(seed=1)
    grad = jax.jit(jax.grad(nce_loss, argnums=3))(net.params, text, src, np.concatenate([src, other]))
    assert np.all(np.isfinite(np.asarray(grad))) and not np.any(np.asarray(grad[0])) and np.any(np.asarray(grad[1]))


@pytest.mark.parametrize("loss_fn", [nce_loss, directional_loss])
def test_losses_compose_with_jit_vmap_grad(tiny, loss_fn):
    net, text = tiny
    src, tgt = _tiny_pair(n=3)
    value, grad = jax.jit(jax.value_and_grad(loss_fn, argnums=3))(net.params, text, src, tgt)
    assert grad.shape == tgt.shape and np.all(np.isfinite(np.asarray(grad))) and np.abs(np.asarray(grad)).max() > 0
    # mean over the batch = mean of the per-image losses (vmap over single-image batches)
    per_image = jax.jit(jax.vmap(loss_fn, in_axes=(None, None, None, 0)))(net.params, text, src, tgt[:, None])
    np.testing.assert_allclose(float(jnp.mean(per_image)), float(value), atol=1e-5)


def test_directional_loss_is_one_minus_cosine(tiny):
    _, text = tiny
    rng = np.random.default_rng(4)
    i_s = rng.standard_normal((1, 32)).astype(np.float32)
    i_t = rng.standard_normal((2, 32)).astype(np.float32)
    delta = (i_t - i_s) / np.linalg.norm(i_t - i_s, axis=1, keepdims=True)
    expected = np.mean(1.0 - delta @ np.asarray(text.direction)[0])
    assert float(jax.jit(directional_loss_from_features)(text, i_s, i_t)) == pytest.approx(expected, abs=1e-6)


def test_preprocess_modes_differ_and_unknown_mode_fails(tiny):
    net, text = tiny
    src, tgt = _tiny_pair()
    loss = jax.jit(nce_loss, static_argnames="preprocess")
    a = float(loss(net.params, text, src, tgt, preprocess="faithful"))
    b = float(loss(net.params, text, src, tgt, preprocess="correct"))
    assert np.isfinite(a) and np.isfinite(b) and a != b
    with pytest.raises(ValueError, match="preprocess mode"):
        nce_loss(net.params, text, src, tgt, preprocess="antialias")
