"""CLIP as CLIP2Protect's search uses it: image features from the vision tower alone
(:func:`networks.clip_vision`) equal ``clip_losses.clip_image_features`` on the full params, for
both preprocessing modes; with the golden ViT-B/32 the loss matches upstream's NCELoss value."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprotect.losses.clip_losses import clip_image_features, nce_loss_from_features, precompute_text_features
from jaxprotect.methods.clip2protect.networks import clip_vision


@functools.lru_cache(maxsize=1)
def _tiny():
    from helpers.clip_helpers import tiny_openai_state_dict

    from jaxprotect.models.clip import load_clip

    return load_clip(tiny_openai_state_dict(3))


@pytest.mark.parametrize("mode", ["faithful", "correct"])
def test_vision_only_features_equal_full_clip(mode):
    clip = _tiny()
    images = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 40, 48, 3)), jnp.float32)
    params, features = clip_vision(clip, mode)
    assert "text_model" not in params and "text_projection" not in params
    got = jax.jit(features)(params, images)
    want = jax.jit(functools.partial(clip_image_features, preprocess=mode))(clip.params, images)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)
    other = jax.jit(clip_vision(clip, "correct" if mode == "faithful" else "faithful")[1])(params, images)
    assert np.abs(np.asarray(other) - np.asarray(got)).max() > 1e-4  # the quirk changes what CLIP sees


@pytest.mark.slow
def test_search_clip_term_matches_upstream_nceloss_golden(golden):
    from helpers.clip_helpers import golden_clip

    g = golden("clip2protect_nce.npz")
    clip = golden_clip()
    text = precompute_text_features(clip, "face", "red lipstick")
    params, features = clip_vision(clip, "faithful")
    src = jnp.asarray(g["source_uint8"][None], jnp.float32) / 255.0
    tgt = jnp.asarray(g["target_uint8"][None], jnp.float32) / 255.0
    with jax.default_matmul_precision("highest"):
        fn = jax.jit(jax.value_and_grad(lambda t: nce_loss_from_features(text, features(params, src), features(params, t))))
        loss, grad = fn(tgt)
    np.testing.assert_allclose(float(loss), float(g["loss"]), atol=2e-5)
    want = np.transpose(g["grad_target"], (0, 2, 3, 1))
    rel = np.linalg.norm(np.asarray(grad) - want) / np.linalg.norm(want)
    assert rel < 1e-3
