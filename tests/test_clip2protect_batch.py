"""The vmapped batch (per-photo fine-tuned generators included) equals separate single-photo runs.

Small configuration (``c2p_small``). Two photos are fine-tuned (2 steps) and searched (3 steps)
together with ``generator_batching`` "vmap" (one computation, per-photo generator weights
batched) and "map" (``lax.map`` inside the compiled step), then each photo alone; each photo's
randomness comes from its own key, so the results agree to float rounding (Adam amplifies
rounding a little: it divides by sqrt(v)).
"""
from __future__ import annotations

import numpy as np
import pytest

from helpers.c2p_small import photo_keys, small_config, small_inputs, small_networks
from jaxprotect.methods.clip2protect.config import ExecutionConfig
from jaxprotect.methods.clip2protect.pipeline import protect_batch

pytestmark = pytest.mark.slow


def tuned(batching: str):
    return small_config(finetune_steps=2, steps=3, execution=ExecutionConfig(generator_batching=batching))


def _runs(cfg):
    nets, _ = small_networks()
    photos, boxes, w0, temb, eemb = small_inputs(nets, 2, 0)
    keys = photo_keys(0, (0, 1))
    batch = protect_batch(nets, photos, boxes, keys, temb, eemb, cfg, w0=w0)
    singles = []
    for i in range(2):
        sl = slice(i, i + 1)
        singles.append(protect_batch(nets, photos[sl], boxes[sl], keys[sl], {k: v[sl] for k, v in temb.items()},
                                     eemb[sl], cfg, w0=w0[sl]))
    return batch, singles, w0


@pytest.mark.parametrize("batching", ["vmap", "map"])
def test_batch_equals_single_photo_runs(batching):
    batch, singles, w0 = _runs(tuned(batching))
    for i, one in enumerate(singles):
        np.testing.assert_allclose(batch["finetune_loss"][i], one["finetune_loss"][0], rtol=1e-5)
        np.testing.assert_allclose(batch["reconstruction"][i], one["reconstruction"][0], atol=2e-5)
        np.testing.assert_allclose(batch["w"][i], one["w"][0], atol=5e-5)
        np.testing.assert_allclose(batch["protected"][i], one["protected"][0], atol=1e-4)
        np.testing.assert_allclose(batch["loss"]["loss"][i], one["loss"]["loss"][0], rtol=1e-4)
        for name, sim in batch["final_sim"].items():
            np.testing.assert_allclose(sim[i], one["final_sim"][name][0], atol=1e-4)
    np.testing.assert_array_equal(batch["w"][:, :2], w0[:, :2])
    assert np.abs(batch["protected"][0] - batch["protected"][1]).max() > 1e-3  # the photos did differ


def test_loop_mode_equals_vmap_mode():
    vm, _, _ = _runs(tuned("vmap"))
    nets, _ = small_networks()
    photos, boxes, w0, temb, eemb = small_inputs(nets, 2, 0)
    keys = photo_keys(0, (0, 1))
    loop = protect_batch(nets, photos, boxes, keys, temb, eemb, tuned("loop"), w0=w0)
    np.testing.assert_allclose(loop["protected"], vm["protected"], atol=1e-4)
    np.testing.assert_allclose(loop["finetune_loss"], vm["finetune_loss"], rtol=1e-5)
