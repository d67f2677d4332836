"""FID InceptionV3 port vs pytorch-fid's own module on rule weights (tests/golden/inception_fid.npz)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprotect.checkpoints.state_dict import CheckpointKeyError, flatten, save_flat
from jaxprotect.models.inception_fid import FID_WEIGHTS_NAME, avg_pool_3x3_exclude_pad, load_inception_fid
from jaxprotect.registry import load_network
from helpers.golden import load_golden
from helpers.weight_rule import rule_weights

MIXED = ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
         "Mixed_7a", "Mixed_7b", "Mixed_7c")
# tolerance table (tests/golden/README.md): f32-vs-f64 of the recording, and what we allow
TOL = {"pool3": 2e-6, "block_mean": 2e-6, "block_crop": 2e-5, "mixed_mean": 2e-6, "input": 1e-5}

_CACHE: dict = {}


def _golden():
    if "g" not in _CACHE:
        _CACHE["g"] = load_golden("inception_fid.npz")
    return _CACHE["g"]


def _net():
    if "net" not in _CACHE:
        _CACHE["net"] = load_network("inception_fid", rule_weights(_golden()))  # fc.* included, as in the .pth
    return _CACHE["net"]


def _run():
    if "out" not in _CACHE:
        g, net = _golden(), _net()
        images = jnp.asarray(np.transpose(g["images"], (0, 2, 3, 1)))
        with jax.default_matmul_precision("highest"):
            blocks, state = net.module.apply({"params": net.params}, images, (0, 1, 2, 3),
                                             capture_intermediates=True, mutable=["intermediates"])
        mixed = {k: np.asarray(state["intermediates"][k]["__call__"][0], np.float64).mean(axis=(1, 2)) for k in MIXED}
        _CACHE["out"] = ([np.asarray(b) for b in blocks], mixed)
    return _CACHE["out"]


def test_pool3_matches_pytorch_fid():
    g = _golden()
    blocks, _ = _run()
    pool3 = blocks[3]
    assert pool3.shape == (2, 2048)
    np.testing.assert_allclose(pool3, g["pool3"], atol=TOL["pool3"], rtol=0)
    np.testing.assert_allclose(pool3, g["pool3_f64"], atol=TOL["pool3"], rtol=0)
    # the two inputs give features that differ far beyond the tolerance: the check sees the input
    assert np.abs(g["pool3"][0] - g["pool3"][1]).max() > 50 * TOL["pool3"]
    # the jitted __call__ gives the same pool3
    np.testing.assert_allclose(np.asarray(_net()(jnp.asarray(np.transpose(g["images"], (0, 2, 3, 1))))), pool3,
                               atol=1e-6)


def test_blocks_and_mixed_outputs_match():
    g = _golden()
    blocks, mixed = _run()
    for k in range(3):
        nchw = np.transpose(blocks[k], (0, 3, 1, 2)).astype(np.float64)  # means in float64, as recorded
        np.testing.assert_allclose(nchw.mean(axis=(2, 3)), g[f"block{k}_mean_f64"], atol=TOL["block_mean"], err_msg=k)
        np.testing.assert_allclose(nchw[:, :, 8:12, 8:12], g[f"block{k}_crop_f64"], atol=TOL["block_crop"], err_msg=k)
    assert blocks[0].shape == (2, 73, 73, 64) and blocks[1].shape == (2, 35, 35, 192) and blocks[2].shape == (2, 17, 17, 768)
    for name in MIXED:
        np.testing.assert_allclose(mixed[name], g[f"mixed_{name}_mean_f64"], atol=TOL["mixed_mean"], err_msg=name)


def test_resize_and_normalisation():
    """The 299 bilinear resize (no antialias) and 2x - 1, checked on the recorded crop of the model input."""
    from jaxprotect.ops.resize import interpolate

    g = _golden()
    x = interpolate(jnp.asarray(np.transpose(g["images"], (0, 2, 3, 1))), (299, 299), mode="bilinear")
    crop = np.transpose(np.asarray(2 * x - 1), (0, 3, 1, 2))[:, :, 100:108, 100:108]
    np.testing.assert_allclose(crop, g["input299_crop_f64"], atol=TOL["input"])


def test_avg_pool_excludes_padding():
    x = jnp.arange(16, dtype=jnp.float32).reshape(1, 4, 4, 1)
    out = np.asarray(avg_pool_3x3_exclude_pad(x))[0, :, :, 0]
    assert out[0, 0] == pytest.approx((0 + 1 + 4 + 5) / 4)  # a corner averages 4 pixels, not 9
    assert out[1, 1] == pytest.approx(np.mean([0, 1, 2, 4, 5, 6, 8, 9, 10]))


def test_converter_names_bad_keys_and_ignores_only_fc():
    sd = rule_weights(_golden())
    assert {"fc.weight", "fc.bias"} <= set(sd)
    without_fc = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    np.testing.assert_array_equal(
        flatten(load_inception_fid(without_fc).params)["Mixed_7c.branch_pool.bn.bias"], sd["Mixed_7c.branch_pool.bn.bias"])
    bad = dict(sd)
    del bad["Mixed_6b.branch7x7_2.conv.weight"]
    bad["AuxLogits.fc.weight"] = np.zeros((1008, 768), np.float32)
    bad["Mixed_5b.branch1x1.bn.running_var"] = np.ones((3,), np.float32)
    with pytest.raises(CheckpointKeyError) as e:
        load_inception_fid(bad)
    for key in ("Mixed_6b.branch7x7_2.conv.weight", "AuxLogits.fc.weight", "Mixed_5b.branch1x1.bn.running_var"):
        assert key in str(e.value)
    with pytest.raises(CheckpointKeyError, match="fc.weight"):
        load_inception_fid({**sd, "fc.weight": np.zeros((1000, 2048), np.float32)})
    with pytest.raises(FileNotFoundError, match=FID_WEIGHTS_NAME):
        load_network("inception_fid")


def test_cache_round_trip(tmp_path):
    net = _net()
    path = tmp_path / "inception_fid.safetensors"
    save_flat(path, flatten(net.params))
    back = load_network("inception_fid", str(path))
    for k, v in flatten(net.params).items():
        np.testing.assert_array_equal(flatten(back.params)[k], v)
