"""MobileFaceNet-512 (CLIP2Protect/AMT-GAN ``irse.MobileFaceNet(512)``): contracts, converter, round trips.

Golden parity is in test_golden_parity.
"""
from __future__ import annotations

import argparse

import jax
import numpy as np
import pytest

from jaxprotect import load_network
from jaxprotect.checkpoints.state_dict import CheckpointKeyError, flatten, save_flat
from jaxprotect.commands import convert
from jaxprotect.models.mobileface import load_mobileface
from helpers import parity
from helpers.golden import load_golden


@pytest.fixture(scope="module")
def golden():
    return load_golden("mobileface.npz")


@pytest.fixture(scope="module")
def weights():
    return parity.weights("mobileface.npz")


@pytest.fixture(scope="module")
def net():
    return parity.network("mobileface.npz")


@pytest.fixture(scope="module")
def x(golden):
    return np.ascontiguousarray(np.transpose(golden["input"], (0, 2, 3, 1)))


@pytest.fixture(scope="module")
def forward(net):
    """(embedding, prenorm) through the jitted function the golden parity test compiles."""
    fn = parity.recogniser_forward("mobileface.npz", net.module)
    return lambda params, x: list(parity.highest(fn, params, x))


@pytest.fixture(scope="module")
def outputs():
    """(embedding, prenorm) of the golden network on the golden input, as the golden parity test has them."""
    return [parity.ours("mobileface.npz", "embedding"), parity.ours("mobileface.npz", "embedding_prenorm")]


def test_network_contract(net, outputs, x):
    assert net.input_size == (112, 112) and net.input_range == (-1.0, 1.0)
    emb, pre = outputs
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(emb, pre / np.linalg.norm(pre, axis=1, keepdims=True), atol=1e-6)
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(np.asarray(net(x)), emb, atol=1e-6)
    assert net.info["thresholds"][0.01] == pytest.approx(0.301611)
    with pytest.raises(ValueError, match="112, 112, 3"):
        net.apply(net.params, np.zeros((1, 96, 96, 3), np.float32))


def test_converter_names_offending_keys(weights):
    broken = dict(weights)
    del broken["conv_4.model.5.conv_dw.bn.running_var"]
    broken["conv_4.model.6.conv.conv.weight"] = np.zeros((256, 128, 1, 1), np.float32)
    broken["linear.weight"] = broken["linear.weight"].T[:, :256]
    with pytest.raises(CheckpointKeyError) as err:
        load_mobileface(broken)
    msg = str(err.value)
    assert "missing keys (1): conv_4.model.5.conv_dw.bn.running_var" in msg
    assert "unexpected keys (1): conv_4.model.6.conv.conv.weight" in msg
    assert "linear.weight: checkpoint (512, 256) != expected (512, 512)" in msg


def test_no_shipped_weights():
    with pytest.raises(ValueError, match="mobile_face.pth"):
        load_mobileface(None)


def test_real_layout_pth_and_convert_round_trip(net, weights, golden, forward, outputs, x, tmp_path):
    """A torch.save'd state dict (with int64 num_batches_tracked) -> ``jaxprotect convert`` -> cache -> same outputs."""
    torch = pytest.importorskip("torch")
    sd = {}
    for k in (str(k) for k in golden["keys"]):
        sd[k] = torch.tensor(3, dtype=torch.long) if k.endswith("num_batches_tracked") else torch.from_numpy(weights[k])
    pth, cache = tmp_path / "mobile_face.pth", tmp_path / "mobile_face.safetensors"
    torch.save(sd, pth)
    from_pth = load_network("mobileface", str(pth))
    assert convert.run(argparse.Namespace(kind="mobileface", source=str(pth), output=str(cache))) == 0
    from_cache = load_network("mobileface", cache)
    npz = tmp_path / "again.npz"
    save_flat(npz, flatten(from_cache.params))
    again = load_mobileface(npz)
    reference = flatten(net.params)
    for loaded in (from_pth, from_cache, again):
        assert loaded.module == net.module
        flat = flatten(loaded.params)
        assert flat.keys() == reference.keys()
        for k in flat:
            np.testing.assert_array_equal(np.asarray(flat[k]), np.asarray(reference[k]), err_msg=k)
    for a, b in zip(forward(again.params, x), outputs):
        np.testing.assert_array_equal(a, b)
