"""torch_layers.compute_layout: the recognisers and LPIPS give the same outputs on XLA-laid-out params,
and their compiled programs no longer re-lay the weights out on every call."""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprotect.nn.torch_layers import BatchNorm, Conv2d, Linear, PReLU, compute_layout
from helpers import parity
from helpers.golden import load_golden


@pytest.fixture(scope="module", autouse=True)
def _release():
    yield
    parity.release_networks()


def test_layers_are_converted_and_the_rest_is_kept():
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = Conv2d(3, 4, 3, 2, 1, name="conv")(x)
            x = Conv2d(4, 4, 3, 1, 1, groups=4, use_bias=False, name="depthwise")(x)
            x = PReLU(4, name="act")(BatchNorm(4, name="bn")(x))
            return Linear(4 * 4 * 4, 5, name="fc")(x.reshape(x.shape[0], -1))

    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    params = Net().init(jax.random.key(1), x)["params"]
    laid = compute_layout(params)
    assert laid["conv"]["kernel"].shape == (3, 3, 3, 4) and set(laid["conv"]) == {"kernel", "bias"}
    assert laid["depthwise"]["kernel"].shape == (3, 3, 1, 4) and set(laid["depthwise"]) == {"kernel"}
    assert laid["fc"]["kernel"].shape == (64, 5)
    assert laid["bn"] is not params["bn"] and all(laid["bn"][k] is params["bn"][k] for k in params["bn"])
    assert laid["act"]["weight"] is params["act"]["weight"]
    np.testing.assert_allclose(Net().apply({"params": laid}, x), Net().apply({"params": params}, x),
                               rtol=1e-5, atol=1e-6)


def _weight_relayouts(fn, *args) -> int:
    """How many fusions of ``fn``'s compiled program only copy one parameter into another layout."""
    hlo = jax.jit(fn).lower(*args).compile().as_text()
    count = 0
    for m in re.finditer(r"^%fused_computation[\w.-]* .*?\{(.*?)^\}", hlo, re.M | re.S):
        ops = set(re.findall(r"= \S+ ([\w-]+)\(", m.group(1)))
        if ops == {"parameter", "transpose", "copy"} or ops == {"parameter", "transpose", "copy", "bitcast"}:
            count += 1
    return count


@pytest.mark.parametrize("file", ["irse50.npz", "mobileface.npz", "facenet.npz"])
def test_recognisers_match_and_stop_relaying_out_weights(file):
    net = parity.network(file)
    x = jnp.asarray(parity.nhwc(load_golden(file)["input"]))
    laid = compute_layout(net.params)
    ours = parity.highest(net.apply, laid, x)
    np.testing.assert_allclose(ours, parity.highest(net.apply, net.params, x), rtol=1e-5, atol=1e-6)
    assert _weight_relayouts(net.apply, net.params, x) > 0, "the checkpoint layout was expected to be re-laid out"
    assert _weight_relayouts(net.apply, laid, x) == 0


def test_lpips_matches_on_laid_out_params():
    lpips = parity.network("lpips_alex.npz")
    g = load_golden("lpips_alex.npz")
    a, b = parity.nhwc(g["in0"]), parity.nhwc(g["in1"])
    laid = lpips.laid_out()
    assert laid.params["net"] is not lpips.params["net"] and "kernel" in laid.params["lin0"]["model"]["1"]
    ours = parity.highest(laid.apply, laid.params, a, b)
    np.testing.assert_allclose(ours, parity.highest(lpips.apply, lpips.params, a, b), rtol=1e-5, atol=1e-7)


def test_a_recogniser_does_not_keep_its_network_alive():
    import gc
    import weakref

    from jaxprotect.recognition import from_network, recogniser_and_params
    from jaxprotect.toy import toy_recogniser

    net = toy_recogniser("tiny", 16, seed=3)
    x = jnp.zeros((1, 16, 16, 3))
    expected = net(x)
    rec, params = recogniser_and_params(net)
    assert rec == from_network(toy_recogniser("tiny", 16, seed=4))  # same module: same static adapter
    alive = weakref.ref(net)
    del net
    gc.collect()
    assert alive() is None, "the Recogniser kept the Network (and its checkpoint-layout params) alive"
    np.testing.assert_allclose(rec.apply(params, x), expected, rtol=1e-6)


def test_device_params_moves_every_leaf_in_place_and_drops_the_host_arrays():
    import weakref

    from jaxprotect.network import device_params

    rng = np.random.default_rng(0)
    host = {"a": {"weight": rng.standard_normal((4, 3)).astype(np.float32)}, "b": np.arange(5, dtype=np.float32)}
    expected = {"a": {"weight": host["a"]["weight"].copy()}, "b": host["b"].copy()}
    gone = weakref.ref(host["a"]["weight"])
    tree = device_params(host)
    assert tree is host and isinstance(tree["a"]["weight"], jax.Array) and isinstance(tree["b"], jax.Array)
    assert gone() is None  # the only reference to the host array was the tree's
    np.testing.assert_array_equal(tree["a"]["weight"], expected["a"]["weight"])
    np.testing.assert_array_equal(tree["b"], expected["b"])
