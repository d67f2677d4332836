"""FID InceptionV3 port vs pytorch-fid's own module on rule weights (tests/golden/inception_fid.npz)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxprotect.checkpoints.state_dict import CheckpointKeyError, flatten, save_flat
from jaxprotect.models.inception_fid import FID_WEIGHTS_NAME, avg_pool_3x3_exclude_pad, load_inception_fid
from jaxprotect.registry import load_network
from helpers.golden import load_golden, tolerance
from helpers.weight_rule import rule_weights

_CACHE: dict = {}


def _golden():
    if "g" not in _CACHE:
        _CACHE["g"] = load_golden("inception_fid.npz")
    return _CACHE["g"]


def _net():
    if "net" not in _CACHE:
        _CACHE["net"] = load_network("inception_fid", rule_weights(_golden()))  # fc.* included, as in the .pth
    return _CACHE["net"]


def test_the_golden_sees_the_input():
    """Parity itself is in test_golden_parity (rows of tests/golden/README.md); here: the two inputs give
    pool3 features that differ far beyond its tolerance, and the jitted call equals the pure apply."""
    from helpers.parity import ours

    g = _golden()
    atol, _ = tolerance("inception_fid.npz", "pool3")
    assert np.abs(g["pool3"][0] - g["pool3"][1]).max() > 50 * atol
    pool3 = ours("inception_fid.npz", "pool3")
    np.testing.assert_allclose(np.asarray(_net()(jnp.asarray(np.transpose(g["images"], (0, 2, 3, 1))))), pool3,
                               atol=1e-6)


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
