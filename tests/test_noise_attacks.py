"""PGD, MI-FGSM, TI-DIM: budget, dodging and impersonation on an ensemble, TI kernel, diverse inputs."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprotect.methods.noise import attack as na
from helpers.tiny_recogniser import tiny_surrogate


@pytest.fixture(scope="module")
def ensemble():
    a, pa = tiny_surrogate(24, seed=0, dim=16)
    b, pb = tiny_surrogate(32, seed=1, dim=16)
    return (a, b), (pa, pb)


@pytest.fixture(scope="module")
def photos():
    return jax.random.uniform(jax.random.key(1), (2, 28, 28, 3))


@pytest.mark.parametrize("method", na.METHODS)
def test_dodging_lowers_every_surrogate_similarity_within_budget(ensemble, photos, method):
    surrogates, params = ensemble
    config = na.default_config(method, eps=16 / 255, steps=5)
    out = na.noise_attack(surrogates, params, photos, jax.random.key(0), config)
    x, o = np.asarray(photos), np.asarray(out)
    assert np.abs(o - x).max() <= 16 / 255 + 1e-6 and o.min() >= 0.0 and o.max() <= 1.0
    sims = np.asarray(na.similarities(surrogates, params, out, photos))
    assert sims.shape == (2, 2) and np.all(sims < 0.97), sims


@pytest.mark.parametrize("method", na.METHODS)
def test_impersonation_raises_the_target_similarity(ensemble, photos, method):
    surrogates, params = ensemble
    target = photos[::-1]
    config = na.default_config(method, eps=16 / 255, steps=5)
    out = na.noise_attack(surrogates, params, photos, jax.random.key(0), config, target_images=target)
    before = np.asarray(na.similarities(surrogates, params, photos, target))
    after = np.asarray(na.similarities(surrogates, params, out, target))
    assert np.all(after > before + 0.01), (before, after)


def test_usual_settings():
    pgd, mi, ti = (na.default_config(m) for m in na.METHODS)
    assert pgd.random_start and pgd.steps == 20 and pgd.alpha == pytest.approx(2.5 * pgd.eps / 20)
    assert mi.momentum == 1.0 and mi.steps == 10 and mi.alpha == pytest.approx(mi.eps / 10)
    assert ti.kernel_size == 7 and ti.diversity_prob == 0.5 and ti.eps == pytest.approx(16 / 255)
    with pytest.raises(ValueError, match="method"):
        na.NoiseConfig(method="fgsm")


@pytest.mark.parametrize("k", [7, 15])
def test_ti_kernel_is_the_papers_gaussian(k):
    impulse = jnp.zeros((1, 31, 31, 1)).at[0, 15, 15, 0].set(1.0)
    kernel = np.asarray(na.ti_smooth(impulse, k, 3.0))[0, 15 - k // 2 : 15 + k // 2 + 1, 15 - k // 2 : 15 + k // 2 + 1, 0]
    x = np.linspace(-3.0, 3.0, k)
    pdf = np.exp(-(x**2) / 2.0)  # norm.pdf up to a constant
    expected = np.outer(pdf, pdf) / np.outer(pdf, pdf).sum()
    np.testing.assert_allclose(kernel, expected, atol=1e-6)


def test_diverse_inputs_shrink_and_pad():
    images = jnp.ones((6, 20, 20, 3))
    draw = na.draw_diverse(jax.random.key(0), 6, 20, prob=1.0, resize_min=0.8)
    out = np.asarray(jax.jit(na.diverse_inputs)(images, draw))
    for o in out:
        rows = np.where(o[:, :, 0].any(axis=1))[0]
        cols = np.where(o[:, :, 0].any(axis=0))[0]
        side = rows.size
        assert 16 <= side < 20 and cols.size == side  # a square of the drawn size
        assert np.all(o[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] == 1.0)
    same = na.diverse_inputs(images, na.draw_diverse(jax.random.key(0), 6, 20, prob=0.0))
    np.testing.assert_array_equal(np.asarray(same), np.asarray(images))


def test_given_start_and_draws_replace_the_keys_draws(ensemble, photos):
    surrogates, params = ensemble
    pgd = na.default_config("pgd", eps=16 / 255, steps=3)
    key = jax.random.key(3)
    default = na.noise_attack(surrogates, params, photos, key, pgd)
    start = na.random_start(jax.random.split(key)[0], jnp.asarray(photos, jnp.float32), pgd.eps)
    np.testing.assert_array_equal(np.asarray(na.noise_attack(surrogates, params, photos, jax.random.key(9), pgd,
                                                             start=start)), np.asarray(default))
    ti = na.default_config("tidim", eps=16 / 255, steps=3)
    default = na.noise_attack(surrogates, params, photos, key, ti)
    n, side = photos.shape[0], photos.shape[1]
    draws = [na.draw_diverse(k, n, side, ti.diversity_prob, ti.resize_min)
             for k in jax.random.split(jax.random.split(key)[1], ti.steps)]
    replay = na.noise_attack(surrogates, params, photos, jax.random.key(9), ti, draws=draws)
    np.testing.assert_array_equal(np.asarray(replay), np.asarray(default))
