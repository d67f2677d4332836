"""TIP-IM: input diversity and MMD against their definitions, projection, greedy selection, vmap vs loop."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprotect.methods.tipim import attack as tipim
from jaxprotect.methods.tipim.input_diversity import DiversityDraw, input_diversity, sample_diversity
from jaxprotect.methods.tipim.mmd import TIPIM_SIGMAS, gaussian_kernel_matrix, image_mmd, mmd_loss
from helpers.tiny_recogniser import tiny_surrogate

SIZE = 24
CONFIG = tipim.TipimConfig(steps=5)  # one config for the step and search tests: one compilation each


@functools.lru_cache(maxsize=None)
def _search(surrogate):
    return jax.jit(functools.partial(tipim.target_candidates, (surrogate,), CONFIG))


@pytest.fixture(scope="module")
def net():
    return tiny_surrogate(SIZE, seed=0, dim=16)


@pytest.fixture(scope="module")
def photos():
    return jax.random.uniform(jax.random.key(1), (2, SIZE, SIZE, 3), minval=0.0, maxval=255.0)


@pytest.fixture(scope="module")
def targets(net):
    surrogate, params = net
    crops = jax.random.uniform(jax.random.key(2), (5, SIZE, SIZE, 3), minval=0.0, maxval=255.0)
    return jax.jit(functools.partial(tipim.target_features, surrogate))((params,), crops)


def test_input_diversity_matches_torch_affine_grid_sample():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(0).uniform(0, 255, (2, 20, 28, 3)).astype(np.float32)
    draw = sample_diversity(jax.random.key(3), 2, (0.05, 0.1))
    ours = np.asarray(jax.jit(input_diversity)(jnp.asarray(x), draw))

    def affine(t, theta):  # input_diversify.affine with PyTorch >= 1.4 defaults (align_corners=False)
        grid = F.affine_grid(theta, t.shape, align_corners=False)
        out = F.grid_sample(t, grid, align_corners=False)
        mask = F.grid_sample(torch.ones_like(t), grid, align_corners=False)
        mask[mask < 0.9999] = 0
        mask[mask > 0] = 1
        return out * mask

    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    t = affine(t, torch.from_numpy(np.array(draw.affine)))
    angle = np.asarray(draw.angle)
    rot = np.zeros((2, 2, 3), np.float32)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = np.cos(angle), np.sin(angle), -np.sin(angle), np.cos(angle)
    ref = affine(t, torch.from_numpy(rot)).permute(0, 2, 3, 1).numpy()
    # Pixels on the mask's 0.9999 edge may flip with float rounding; everything else must agree.
    close = np.abs(ours - ref) < 1e-3
    assert close.mean() > 0.995
    assert (ours == 0).mean() > 0.01  # the draw does push some pixels outside


def test_mmd_uses_tipim_bandwidth_quirk():
    x = jnp.zeros((1, 4))
    y = jnp.full((1, 4), 10.0)  # squared distance 400
    k = float(gaussian_kernel_matrix(x, y)[0, 0])
    assert k == pytest.approx(sum(np.exp(-400.0 / (2.0 * s)) for s in TIPIM_SIGMAS), rel=1e-5)
    expected = 2 * len(TIPIM_SIGMAS) - 2 * k  # K(x,x) = K(y,y) = 19 for a single row
    assert float(mmd_loss(x, y)) == pytest.approx(expected, rel=1e-5)
    assert float(image_mmd(jnp.ones((3, 3, 3)), jnp.ones((3, 3, 3)))) == 0.0


def test_gains_follow_their_formulas():
    rng = np.random.default_rng(0)
    adv, init = rng.normal(size=8), rng.normal(size=8)
    tg = rng.normal(size=(4, 8))
    d1 = np.linalg.norm(adv - init)
    terms = np.exp(d1 - np.linalg.norm(adv - tg, axis=1))
    a, i, t = map(jnp.asarray, (adv, init, tg))
    assert float(tipim.gain1(a, i, t)) == pytest.approx(np.log1p(terms.sum()), rel=1e-5)
    assert float(tipim.gain2(a, i, t)) == pytest.approx(np.log1p(terms.min()), rel=1e-5)
    assert float(tipim.gain3(a, i, t)) == pytest.approx(np.log1p(terms.max()), rel=1e-5)


@pytest.mark.parametrize("gain", ["gain1", "gain2", "gain3"])
def test_greedy_selection_picks_what_the_gain_says(gain):
    rng = np.random.default_rng(1)
    init = rng.normal(size=8).astype(np.float32)
    tg = rng.normal(size=(3, 8)).astype(np.float32)
    cands = rng.normal(size=(6, 8)).astype(np.float32)
    cands[4] = tg[1] + 0.01  # a candidate right on a target
    best, gains = tipim.select_candidate((jnp.asarray(cands),), (jnp.asarray(init),), (jnp.asarray(tg),), gain)
    fn = {"gain1": np.sum, "gain2": np.min, "gain3": np.max}[gain]
    expect = [
        np.log1p(fn(np.exp(np.linalg.norm(c - init) - np.linalg.norm(c - tg, axis=1)))) for c in cands
    ]
    np.testing.assert_allclose(np.asarray(gains), expect, rtol=1e-5)
    assert int(best) == int(np.argmax(expect))


def test_step_keeps_the_candidate_with_the_largest_gain(net, photos, targets):
    surrogate, params = net
    config = CONFIG
    clean = photos
    init = tipim.features((surrogate,), (params,), clean)
    state = tipim.tipim_init(clean)
    key = jax.random.key(7)
    step = jax.jit(functools.partial(tipim.tipim_step, (surrogate,), config))
    new, info = step((params,), state, clean, init, targets, key)
    chosen = info.chosen
    np.testing.assert_allclose(np.asarray(info.update), np.asarray(new.images - state.images), atol=1e-5)
    search = _search(surrogate)
    embed = jax.jit(functools.partial(tipim.features, (surrogate,)))
    draw = sample_diversity(key, clean.shape[0], config.std_range)
    for n in range(clean.shape[0]):
        d = DiversityDraw(draw.affine[n], draw.angle[n])
        per_init = tuple(f[n] for f in init)
        _, cands, _ = search((params,), clean[n], state.grad_sum[n], clean[n], per_init, targets, d)
        feats = embed((params,), cands)
        gains = [float(tipim.gain3(feats[0][j], per_init[0], targets[0])) for j in range(cands.shape[0])]
        assert int(chosen[n]) == int(np.argmax(gains))
        np.testing.assert_allclose(np.asarray(new.images[n]), np.asarray(cands[int(np.argmax(gains))]), atol=1e-4)


def test_vmapped_target_search_equals_a_loop(net, photos, targets):
    surrogate, params = net
    config = CONFIG
    image = photos[0] + 3.0 * jax.random.normal(jax.random.key(4), photos[0].shape)
    grad_sum = jax.random.normal(jax.random.key(5), image.shape)
    init = tuple(f[0] for f in tipim.features((surrogate,), (params,), photos[:1]))
    draw = DiversityDraw(*(a[0] for a in sample_diversity(jax.random.key(6), 1)))
    search = _search(surrogate)
    losses, cands, sums = search((params,), image, grad_sum, photos[0], init, targets, draw)
    one = jax.jit(functools.partial(tipim.target_candidate, (surrogate,), config))
    for j in range(targets[0].shape[0]):
        lj, cj, sj = one((params,), image, grad_sum, photos[0], init, (targets[0][j],), draw)
        np.testing.assert_allclose(float(losses[j]), float(lj), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(np.asarray(cands[j]), np.asarray(cj), atol=1e-3)
        np.testing.assert_allclose(np.asarray(sums[j]), np.asarray(sj), rtol=1e-4, atol=1e-4)
    assert not np.allclose(np.asarray(cands[0]), np.asarray(cands[1]))  # targets do steer differently


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_projection_keeps_every_pixel_within_eps(net, photos, targets, norm):
    surrogate, params = net
    config = tipim.TipimConfig(eps=4.0, steps=6, step_size=3.0, norm=norm)
    out = np.asarray(tipim.tipim_attack(surrogate, params, photos, targets, jax.random.key(0), config))
    x = np.asarray(photos)
    assert np.all(out >= np.maximum(x - 4.0, 0.0)) and np.all(out <= np.minimum(x + 4.0, 255.0))
    assert np.abs(out - x).max() > 3.9  # the budget is used, so the bound is what stops it


def test_gamma_adds_the_mmd_term_to_every_target_loss(net, photos, targets):
    surrogate, params = net
    image = photos[0] + 5.0
    init = tuple(f[0] for f in tipim.features((surrogate,), (params,), photos[:1]))
    draw = DiversityDraw(jnp.eye(2, 3), jnp.zeros(()))
    args = ((surrogate,), (params,), image, photos[0], init, (targets[0][0],), draw)
    plain = tipim._target_loss(args[0], tipim.TipimConfig(), *args[1:])
    natural = tipim._target_loss(args[0], tipim.TipimConfig(gamma=0.5), *args[1:])
    assert float(natural - plain) == pytest.approx(0.5 * float(image_mmd(image, photos[0])), rel=1e-4)
    assert float(image_mmd(image, photos[0])) > 0


def test_l2_step_size_is_alpha_sqrt_d():
    config = tipim.TipimConfig(eps=1e6, steps=10)
    image = jnp.full((8, 8, 3), 100.0)
    grad = jax.random.normal(jax.random.key(0), image.shape)
    new, _ = tipim._update(config, image, jnp.zeros_like(image), grad, image - 1e6, image + 1e6)
    step = np.asarray(new - image)
    assert np.linalg.norm(step) == pytest.approx(config.alpha * np.sqrt(8 * 8 * 3), rel=1e-4)
    np.testing.assert_allclose(step / np.linalg.norm(step), -np.asarray(grad) / np.linalg.norm(grad), atol=1e-5)


def test_tipim_lowers_the_surrogate_similarity(net, photos, targets):
    surrogate, params = net
    config = tipim.TipimConfig(steps=10)
    result = tipim.tipim_run(surrogate, params, photos, targets, jax.random.key(0), config)
    before = tipim.features((surrogate,), (params,), photos)[0]
    after = tipim.features((surrogate,), (params,), result.images)[0]
    cos = np.sum(np.asarray(before) * np.asarray(after), axis=1)
    assert np.all(cos < 0.9), cos
    assert result.chosen.shape == (10, 2) and int(result.chosen.max()) < targets[0].shape[0]
    # Same key, same result; another key, another result.
    again = tipim.tipim_attack(surrogate, params, photos, targets, jax.random.key(0), config)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(result.images))
    other = tipim.tipim_attack(surrogate, params, photos, targets, jax.random.key(1), config)
    assert not np.array_equal(np.asarray(other), np.asarray(result.images))


def test_config_rejects_bad_options():
    with pytest.raises(ValueError, match="norm"):
        tipim.TipimConfig(norm="l1")
    with pytest.raises(ValueError, match="gain"):
        tipim.TipimConfig(gain="gain4")
    assert tipim.TipimConfig().alpha == pytest.approx(0.18)


def test_given_diversity_draws_replace_the_keys_draws(net, photos, targets):
    """Replaying the draws the key would make gives the same trajectory; other draws change it."""
    surrogate, params = net
    config = tipim.TipimConfig(steps=3)
    key = jax.random.key(2)
    default = tipim.tipim_run(surrogate, params, photos, targets, key, config)
    draws = [tipim.draw_step(k, photos.shape[0], config) for k in jax.random.split(key, config.steps)]
    replay = tipim.tipim_run(surrogate, params, photos, targets, jax.random.key(99), config, draws=draws)
    # same numbers up to float32 rounding (XLA fuses the in-step draw differently), same choices
    np.testing.assert_allclose(np.asarray(replay.images), np.asarray(default.images), atol=2e-4)
    np.testing.assert_array_equal(np.asarray(replay.chosen), np.asarray(default.chosen))
    flat = [tipim.DiversityDraw(d.affine * 0 + jnp.eye(2, 3), d.angle * 0) for d in draws]
    other = tipim.tipim_run(surrogate, params, photos, targets, key, config, draws=flat)
    assert np.abs(np.asarray(other.images) - np.asarray(default.images)).max() > 0.1
