"""Stage 1 (generator fine-tuning) on a small configuration: the strided last block used when
the loss resize is an integer nearest downsample gives the full computation's step."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from helpers.c2p_small import photo_keys, small_inputs, small_networks
from jaxprotect.checkpoints.state_dict import flatten
from jaxprotect.methods.clip2protect.config import ExecutionConfig, FinetuneConfig
from jaxprotect.methods.clip2protect.finetune import (broadcast_params, init_finetune, loss_stride,
                                                     make_finetune_step)
from jaxprotect.methods.clip2protect.pipeline import _finetune_fn, _real_images, draw_photo_noise
from jaxprotect.runtime import batch_mesh


def test_loss_stride_only_for_integer_nearest_downsampling():
    cfg = FinetuneConfig()
    assert loss_stride(1024, cfg) == 4
    assert loss_stride(256, cfg) == 1
    assert loss_stride(1024, dataclasses.replace(cfg, resize="bilinear")) == 1
    assert loss_stride(1024, dataclasses.replace(cfg, strided=False)) == 1
    assert loss_stride(1000, cfg) == 1


def test_strided_fine_tuning_step_equals_the_full_one():
    nets, _ = small_networks(size=32)
    photos, _, w0, _, _ = small_inputs(nets, 2, 0)
    noise = draw_photo_noise(photo_keys(0, (0, 1)), nets.synthesis)
    results = {}
    for strided in (True, False):
        cfg = FinetuneConfig(size=16, strided=strided)
        assert loss_stride(32, cfg) == (2 if strided else 1)
        step = jax.jit(make_finetune_step(nets.synthesis, nets.lpips_apply, cfg, ExecutionConfig()))
        state = init_finetune(broadcast_params(nets.g_params, 2), cfg)
        real = _real_images(photos, cfg)
        losses = []
        for _ in range(3):
            state, loss = step(state, jnp.asarray(w0), noise, real, nets.lpips_params)
            losses.append(np.asarray(loss))
        results[strided] = (np.stack(losses), flatten(state.params))
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-5)
    assert (results[True][0][-1] < results[True][0][0]).all()
    off = total = 0
    for k, v in results[False][1].items():
        diff = np.abs(np.asarray(results[True][1][k]) - np.asarray(v))
        # Adam's normalised step can turn a rounding-level difference of a ~0 gradient into up to
        # lr per step; all but ~2e-5 of the 43 M values agree within 1e-5 (= lr / 50)
        assert diff.max() <= 3 * 5e-4, k
        off, total = off + int(np.sum(diff > 1e-5)), total + diff.size
    assert off < 1e-4 * total


def test_compiled_steps_are_cached_by_the_sections_they_read():
    """A setting the fine-tuning step does not read (the search's) never changes its cache entry;
    one it reads (fine-tuning, execution) does."""
    nets, _ = small_networks()
    mesh = batch_mesh(jax.devices()[:1])
    ft, ex = FinetuneConfig(size=16), ExecutionConfig()
    same = _finetune_fn(nets.synthesis, nets.lpips_apply, ft, ex, mesh)
    assert _finetune_fn(nets.synthesis, nets.lpips_apply, FinetuneConfig(size=16), ExecutionConfig(), mesh) is same
    assert _finetune_fn(nets.synthesis, nets.lpips_apply, dataclasses.replace(ft, lr=1e-3), ex, mesh) is not same
    assert _finetune_fn(nets.synthesis, nets.lpips_apply, ft, ExecutionConfig(remat=True), mesh) is not same


def test_precomputed_lpips_features_of_the_photo_give_the_same_tuning():
    from jaxprotect.methods.clip2protect.finetune import FinetuneTarget, finetune_target
    from jaxprotect.methods.clip2protect.pipeline import _finetune_real
    from jaxprotect.models.lpips import LPIPSModule

    nets, _ = small_networks(size=32)
    photos, _, w0, _, _ = small_inputs(nets, 2, 1)
    noise = draw_photo_noise(photo_keys(1, (0, 1)), nets.synthesis)
    cfg = FinetuneConfig(size=16)
    real = _real_images(photos, cfg)
    module = LPIPSModule("vgg")

    def features(params, x):
        return module.apply({"params": params}, x, None)

    target = finetune_target(real, features, nets.lpips_params)
    assert isinstance(target, FinetuneTarget) and len(target.lpips.maps) == 5
    step = jax.jit(make_finetune_step(nets.synthesis, nets.lpips_apply, cfg, ExecutionConfig()))
    runs = {}
    for name, r in (("image", real), ("features", target)):
        state = init_finetune(broadcast_params(nets.g_params, 2), cfg)
        losses = []
        for _ in range(2):
            state, loss = step(state, jnp.asarray(w0), noise, r, nets.lpips_params)
            losses.append(np.asarray(loss))
        runs[name] = (np.stack(losses), flatten(state.params))
    np.testing.assert_allclose(runs["features"][0], runs["image"][0], rtol=1e-5)
    for k, v in runs["image"][1].items():
        assert np.abs(np.asarray(runs["features"][1][k]) - np.asarray(v)).max() <= 3 * 5e-4, k
    # the pipeline computes the features once, before the steps, when the networks can
    with_features = dataclasses.replace(nets, lpips_features=features)
    once = _finetune_real(with_features, real)
    assert isinstance(once, FinetuneTarget) and _finetune_real(with_features, once) is once
    assert _finetune_real(nets, real) is real
