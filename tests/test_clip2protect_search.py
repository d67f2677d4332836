"""CLIP2Protect invariants on the small configuration (``c2p_small``: StyleGAN2 at 16 px with
golden-rule weights, tiny CLIP, random LPIPS-VGG, tiny recognisers).

The small generator (8 px) has 4 W+ rows and noise maps of side 4, 8, 8, so the tests freeze
rows 0..1 (upstream: 0..7 of 18) and keep maps of side >= 8 fixed (upstream: >= 512); the code
path is the one the defaults take (``test_clip2protect_ops`` checks the 1024 partitions).
"""
from __future__ import annotations

import jax
import numpy as np
import pytest

from helpers.c2p_small import photo_keys, small_config, small_inputs, small_networks, with_finetune, with_search
from jaxprotect.methods.clip2protect.finetune import draw_noise
from jaxprotect.methods.clip2protect.pipeline import _real_images, draw_photo_noise, finetune_batch, protect_batch

SEARCH = small_config(steps=6)
TUNED = small_config(finetune_steps=2, steps=3)


def _run(cfg, n=2, ids=(0, 1), seed=0, **kw):
    nets, _ = small_networks()
    photos, boxes, w0, temb, eemb = small_inputs(nets, n, seed)
    keys = photo_keys(seed, ids)
    return protect_batch(nets, photos, boxes, keys, temb, eemb, cfg, w0=w0, **kw), w0


@pytest.fixture(scope="module")
def searched():
    first, w0 = _run(SEARCH)
    again, _ = _run(SEARCH)
    return first, again, w0


def test_frozen_rows_unchanged_bit_for_bit(searched):
    res, _, w0 = searched
    np.testing.assert_array_equal(res["w"][:, :2], w0[:, :2])
    assert (np.abs(res["w"][:, 2:] - w0[:, 2:]).max(axis=-1) > 1e-3).all()  # every other row moved


def test_noise_maps_from_the_limit_up_stay_fixed(searched):
    res, _, _ = searched
    nets, _ = small_networks()
    keys = photo_keys(0, (0, 1))
    drawn = [draw_noise(jax.random.fold_in(k, 0), nets.synthesis) for k in keys]
    for i, side in enumerate(nets.synthesis.noise_resolutions()):
        before = np.stack([np.asarray(d[i]) for d in drawn])
        if side >= 8:
            np.testing.assert_array_equal(res["noise"][i], before)
        else:
            assert np.abs(res["noise"][i] - before).max() > 1e-3


def test_loss_decreases(searched):
    res, _, _ = searched
    loss = res["loss"]["loss"]
    assert loss.shape == (2, SEARCH.search.steps) and np.isfinite(loss).all()
    # the CLIP term sees a fresh random perspective every step, so compare halves of the run
    assert (loss[:, 3:].mean(axis=1) < loss[:, :3].mean(axis=1)).all()
    adv = res["loss"]["adv"]
    assert (adv[:, -1] < adv[:, 0]).all() and (np.diff(adv, axis=1).mean(axis=1) < 0).all()


def test_same_key_same_result_and_keys_matter(searched):
    first, again, _ = searched
    np.testing.assert_array_equal(first["protected"], again["protected"])
    np.testing.assert_array_equal(first["loss"]["loss"], again["loss"]["loss"])
    other, _ = _run(SEARCH, ids=(5, 6))
    assert not np.array_equal(other["protected"], first["protected"])


def test_final_image_is_taken_before_the_last_update(searched):
    # upstream saves the last step's forward, computed before that step's Adam update: with N
    # steps the result reflects N-1 updates, the same image as N-1 steps evaluated after updating
    pre, _ = _run(with_search(SEARCH, steps=4))
    post, _ = _run(with_search(SEARCH, steps=3, final_image="post_update"))
    np.testing.assert_array_equal(pre["protected"], post["protected"])
    np.testing.assert_array_equal(pre["w"], post["w"])
    assert pre["loss"]["loss"].shape == (2, 4) and post["loss"]["loss"].shape == (2, 4)
    np.testing.assert_array_equal(pre["loss"]["loss"][:, :3], post["loss"]["loss"][:, :3])
    assert set(pre["final_sim"]) == {"ir152", "irse50", "facenet", "mobileface"}
    np.testing.assert_allclose(pre["victim_sim"], pre["final_sim"]["mobileface"], atol=1e-6)  # eval photo = target here


def test_first_step_guard_without_augmentation():
    # without RandomPerspective the first step's image equals the CLIP source image and upstream's
    # query normalize(0) is NaN: the guard gives that step's CLIP term 0 (and no gradient)
    res, _ = _run(with_search(SEARCH, augment=False, steps=2))
    clip = res["loss"]["clip"]
    assert (clip[:, 0] == 0).all() and (clip[:, 1:] > 0).all()
    assert np.isfinite(res["w"]).all() and np.isfinite(res["protected"]).all()
    assert np.isfinite(res["loss"]["loss"]).all()


def test_sequential_generator_carries_weights_and_adam_state():
    nets, _ = small_networks()
    photos, _, w0, _, _ = small_inputs(nets, 2, 0)
    keys = photo_keys(0, (0, 1))
    noise = draw_photo_noise(keys, nets.synthesis)
    cfg = with_finetune(TUNED, steps=1)
    real = _real_images(photos, cfg.finetune)
    seq_cfg = with_finetune(cfg, sequential_generator=True)
    reset, _, _ = finetune_batch(nets, w0, noise, real, cfg)
    seq, seq_losses, carry = finetune_batch(nets, w0, noise, real, seq_cfg)
    leaf = lambda p: np.asarray(p["convs"]["0"]["conv"]["weight"])  # noqa: E731
    # photo 0 starts from the pretrained weights either way
    np.testing.assert_allclose(leaf(seq)[0], leaf(reset)[0], atol=1e-6)
    # photo 1: the sequential chain starts where photo 0 ended (weights AND Adam moments/count)
    first, _, state0 = finetune_batch(nets, w0[:1], [n[:1] for n in noise], real[:1], seq_cfg)
    second, _, _ = finetune_batch(nets, w0[1:], [n[1:] for n in noise], real[1:], seq_cfg, carry=state0)
    np.testing.assert_array_equal(leaf(seq)[1], leaf(second)[0])
    assert np.abs(leaf(seq)[1] - leaf(reset)[1]).max() > 1e-6
    counts = [int(np.asarray(c)[0]) for c in jax.tree.leaves(carry.opt_state) if np.asarray(c).dtype.kind == "i"]
    assert counts and all(c == 2 * cfg.finetune.steps for c in counts)
    assert seq_losses.shape == (2, cfg.finetune.steps)


def test_latent_term_is_a_sum_and_the_loss_weights_follow_upstream(searched):
    res, _, w0 = searched
    curve = res["loss"]
    # the evaluation forward (last entry) sees the returned code: l2 = SUM((w0 - w)^2), not a mean
    np.testing.assert_allclose(curve["l2"][:, -1], np.sum((res["w"] - w0) ** 2, axis=(1, 2)), rtol=1e-5)
    sc = SEARCH.search
    want = sc.lambda_lat * curve["l2"] + sc.lambda_adv * curve["adv"] + sc.lambda_clip * curve["clip"]
    np.testing.assert_allclose(curve["loss"], want, rtol=1e-5, atol=1e-6)
    assert (sc.lambda_lat, sc.lambda_adv, sc.lambda_clip) == (0.01, 0.7, 0.3)
