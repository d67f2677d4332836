"""FaceNet (facenet-pytorch InceptionResnetV1): contracts, logits head, converter.

Golden parity is in test_golden_parity.
"""
from __future__ import annotations

import numpy as np
import pytest

from jaxprotect import load_network
from jaxprotect.checkpoints.state_dict import CheckpointKeyError, flatten, save_flat
from jaxprotect.models.facenet import InceptionResnetV1, facenet_param_shapes, load_facenet
from helpers import parity
from helpers.golden import load_golden


@pytest.fixture(scope="module")
def golden():
    return load_golden("facenet.npz")


@pytest.fixture(scope="module")
def weights():
    return parity.weights("facenet.npz")


@pytest.fixture(scope="module")
def net():
    return parity.network("facenet.npz")


def _nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


@pytest.fixture(scope="module")
def outputs():
    """(embedding, prenorm) of the golden network on the golden input, as the golden parity test has them."""
    return [parity.ours("facenet.npz", "embedding"), parity.ours("facenet.npz", "embedding_prenorm")]


def test_network_contract(net, outputs):
    assert net.input_size == (160, 160) and net.input_range == (-1.0, 1.0)
    np.testing.assert_allclose(np.linalg.norm(outputs[0], axis=1), 1.0, atol=1e-6)
    assert net.info["num_classes"] == 8631


def test_logits_head_optional(weights, golden, outputs):
    without = {k: v for k, v in weights.items() if not k.startswith("logits.")}
    net = load_facenet(without)
    assert "logits" not in net.params and net.info["num_classes"] is None
    with pytest.raises(ValueError, match="no logits head"):
        net.apply(net.params, np.zeros((1, 160, 160, 3), np.float32), output="logits")
    # the head itself: logits = Linear(512, 8631) on the last_bn output (classify=True)
    full = load_facenet(weights)
    head = InceptionResnetV1(8631).apply({"params": full.params}, np.zeros((1, 160, 160, 3), np.float32), "logits")
    assert head.shape == (1, 8631)
    prenorm = outputs[1][:1]
    expected = prenorm @ weights["logits.weight"].T + weights["logits.bias"]
    got = np.asarray(full.apply(full.params, _nhwc(golden["input"])[:1], output="logits"))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    assert head.dtype == np.float32


def test_converter_names_bad_keys(weights):
    broken = dict(weights)
    del broken["repeat_2.3.branch1.2.bn.running_var"]
    broken["repeat_9.0.conv.weight"] = np.zeros((1,), np.float32)
    broken["last_linear.weight"] = broken["last_linear.weight"][:, :100]
    with pytest.raises(CheckpointKeyError) as err:
        load_facenet(broken)
    msg = str(err.value)
    assert "repeat_2.3.branch1.2.bn.running_var" in msg
    assert "repeat_9.0.conv.weight" in msg
    assert "last_linear.weight" in msg
    logits_only_weight = {k: v for k, v in weights.items() if k != "logits.bias"}
    with pytest.raises(CheckpointKeyError, match="logits.bias"):
        load_facenet(logits_only_weight)


def test_no_shipped_weights():
    with pytest.raises(ValueError, match="facenet.pth"):
        load_facenet(None)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_convert_round_trip(net, tmp_path, suffix):
    path = tmp_path / f"facenet{suffix}"
    save_flat(path, flatten(net.params))
    again = load_network("facenet", path)
    a, b = flatten(net.params), flatten(again.params)
    assert a.keys() == b.keys() == facenet_param_shapes(8631).keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
