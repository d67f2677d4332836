"""CLIP2Protect invariants on the small configuration (``c2p_small``: StyleGAN2 at 16 px with
golden-rule weights, tiny CLIP, random LPIPS-VGG, tiny recognisers).

The small generator (8 px) has 4 W+ rows and noise maps of side 4, 8, 8, so the tests freeze
rows 0..1 (upstream: 0..7 of 18) and keep maps of side >= 8 fixed (upstream: >= 512); the code
path is the one the defaults take (``test_clip2protect_ops`` checks the 1024 partitions).
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from c2p_small import small_inputs, small_networks
from jaxprotect.methods.clip2protect.config import Clip2ProtectConfig
from jaxprotect.methods.clip2protect.finetune import draw_noise
from jaxprotect.methods.clip2protect.pipeline import finetune_batch, photo_keys, protect_batch

SEARCH = Clip2ProtectConfig(steps=6, frozen_rows=2, noise_max_res=8, skip_finetune=True)
TUNED = Clip2ProtectConfig(finetune_steps=2, finetune_size=16, steps=3, frozen_rows=2, noise_max_res=8, augment=False)


def _run(cfg, n=2, ids=(0, 1), seed=0, **kw):
    nets, _ = small_networks()
    photos, boxes, w0, temb, eemb = small_inputs(nets, n, seed)
    keys = photo_keys(jax.random.key(seed), ids)
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
    keys = photo_keys(jax.random.key(0), (0, 1))
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
    assert loss.shape == (2, SEARCH.steps) and np.isfinite(loss).all()
    assert (loss[:, -1] < loss[:, 0]).all()
    assert (res["loss"]["adv"][:, -1] < res["loss"]["adv"][:, 0]).all()


def test_same_key_same_result_and_keys_matter(searched):
    first, again, _ = searched
    np.testing.assert_array_equal(first["protected"], again["protected"])
    np.testing.assert_array_equal(first["loss"]["loss"], again["loss"]["loss"])
    other, _ = _run(SEARCH, ids=(5, 6))
    assert not np.array_equal(other["protected"], first["protected"])


def test_final_image_is_taken_before_the_last_update(searched):
    # upstream saves the last step's forward, computed before that step's Adam update: with N
    # steps the result reflects N-1 updates, the same image as N-1 steps evaluated after updating
    pre, _ = _run(dataclasses.replace(SEARCH, steps=4))
    post, _ = _run(dataclasses.replace(SEARCH, steps=3, final_image="post_update"))
    np.testing.assert_array_equal(pre["protected"], post["protected"])
    np.testing.assert_array_equal(pre["w"], post["w"])
    assert pre["loss"]["loss"].shape == (2, 4) and post["loss"]["loss"].shape == (2, 4)
    np.testing.assert_array_equal(pre["loss"]["loss"][:, :3], post["loss"]["loss"][:, :3])
    assert set(pre["final_sim"]) == {"ir152", "irse50", "facenet", "mobileface"}
    np.testing.assert_allclose(pre["victim_sim"], pre["final_sim"]["mobileface"], atol=1e-6)  # eval photo = target here


@pytest.fixture(scope="module")
def tuned():
    batch, w0 = _run(TUNED)
    singles = []
    nets, _ = small_networks()
    photos, boxes, _, temb, eemb = small_inputs(nets, 2, 0)
    keys = photo_keys(jax.random.key(0), (0, 1))
    for i in range(2):
        sl = slice(i, i + 1)
        singles.append(protect_batch(nets, photos[sl], boxes[sl], keys[sl], {k: v[sl] for k, v in temb.items()},
                                     eemb[sl], TUNED, w0=w0[sl]))
    return batch, singles


def test_batch_equals_single_photo_runs(tuned):
    batch, singles = tuned
    for i, one in enumerate(singles):
        np.testing.assert_allclose(batch["finetune_loss"][i], one["finetune_loss"][0], rtol=1e-5)
        np.testing.assert_allclose(batch["reconstruction"][i], one["reconstruction"][0], atol=2e-5)
        np.testing.assert_allclose(batch["w"][i], one["w"][0], atol=1e-5)
        np.testing.assert_allclose(batch["protected"][i], one["protected"][0], atol=1e-4)
        np.testing.assert_allclose(batch["loss"]["loss"][i], one["loss"]["loss"][0], rtol=1e-4)


def test_first_step_guard_without_augmentation(tuned):
    batch, _ = tuned
    clip = batch["loss"]["clip"]
    assert (clip[:, 0] == 0).all() and (clip[:, 1:] > 0).all()  # step 0: image == source, CLIP term undefined
    assert np.isfinite(batch["w"]).all() and np.isfinite(batch["protected"]).all()


def test_sequential_generator_carries_weights_and_adam_state():
    nets, _ = small_networks()
    photos, _, w0, _, _ = small_inputs(nets, 2, 0)
    from jaxprotect.methods.clip2protect.pipeline import _noise_batch, _real_images

    keys = photo_keys(jax.random.key(0), (0, 1))
    noise = _noise_batch(keys, nets.synthesis)
    real = _real_images(photos, TUNED)
    seq_cfg = dataclasses.replace(TUNED, sequential_generator=True)
    reset, _, _ = finetune_batch(nets, w0, noise, real, TUNED)
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
    assert counts and all(c == 2 * TUNED.finetune_steps for c in counts)
    assert seq_losses.shape == (2, TUNED.finetune_steps)
