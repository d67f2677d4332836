"""IR / IR-SE backbones (IRSE50, IR152, IR-50): contracts, converter, loading.

Golden parity is in test_golden_parity.
"""
from __future__ import annotations

import argparse
import functools

import jax
import numpy as np
import pytest

from jaxprotect import load_network
from jaxprotect.checkpoints.state_dict import CheckpointKeyError, flatten, save_flat
from jaxprotect.commands import convert
from jaxprotect.models.irse import UNITS, Backbone, load_ir50, load_ir152, load_irse50
from jaxprotect.nn.torch_layers import param_shapes
from helpers import parity
from helpers.golden import load_golden
from helpers.weight_rule import rule_for, rule_weights

LOADERS = {"irse50": load_irse50, "ir152": load_ir152, "ir50": load_ir50}


def _nhwc(x):
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


@functools.cache
def _golden(name):
    return load_golden(f"{name}.npz")


def _unit_index(num_layers: int):
    """body index -> (stage, position in stage)."""
    out = []
    for stage, n in enumerate(UNITS[num_layers]):
        out += [(stage, j) for j in range(n)]
    return out


def ir50_golden_like():
    """The face.evoLVe IR_50 key list, derived from IR-SE-50's (same 3/4/14/3 units) minus the SE gates.

    Returned in the golden-file form (keys in state-dict order, shapes, rules, prelu keys, seed) so
    that :func:`rule_weights` draws an IR-50 state dict by the documented rule.
    """
    g = _golden("irse50")
    keep = [i for i, k in enumerate(g["keys"]) if ".res_layer.5." not in str(k)]
    keys = [str(g["keys"][i]) for i in keep]
    shapes = [str(g["shapes"][i]) for i in keep]
    prelu = frozenset(str(k) for k in g["prelu_keys"])
    rules = [rule_for(k, tuple(int(v) for v in s.split(",") if v), "generic", prelu) for k, s in zip(keys, shapes)]
    return {"keys": np.array(keys), "shapes": np.array(shapes), "rules": np.array(rules),
            "prelu_keys": g["prelu_keys"], "seed": np.int64(5050), "profile": np.str_("generic")}


@functools.cache
def _ir50_weights():
    return rule_weights(ir50_golden_like())


def _weights(name):
    """Rule weights of a golden (cached by :mod:`helpers.parity` for this module) or of the derived IR-50."""
    return _ir50_weights() if name == "ir50" else parity.weights(f"{name}.npz")


@functools.cache
def _ir50():
    return load_ir50(_ir50_weights())


def _net(name):
    return _ir50() if name == "ir50" else parity.network(f"{name}.npz")


@pytest.fixture(scope="module", autouse=True)
def _release_caches():
    """The caches above hold a few hundred MB of weights; drop them when this module is done."""
    yield
    for cached in (_golden, _ir50_weights, _ir50):
        cached.cache_clear()


def _run(net, x):
    """(embedding, prenorm embedding), through the jitted function the golden parity test compiles."""
    return list(parity.highest(parity.jitted_outputs(net.module, (), (("normalize", False),)), net.params, x))


def _input(name):
    return _nhwc(_golden("irse50" if name == "ir50" else name)["input"])


def _outputs(name):
    """(embedding, prenorm embedding) of the golden network on the golden input, as the parity test has them."""
    return [parity.ours(f"{name}.npz", "embedding"), parity.ours(f"{name}.npz", "embedding_prenorm")]


def test_network_contract():
    x = _nhwc(_golden("irse50")["input"])
    irse50, ir152 = _net("irse50"), _net("ir152")
    for net in (irse50, ir152):
        assert net.input_size == (112, 112) and net.input_range == (-1.0, 1.0)
    emb, pre = _outputs("irse50")
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(emb, pre / np.linalg.norm(pre, axis=1, keepdims=True), atol=1e-6)
    # IR-152 is not normalised upstream: the default output is the prenorm one.
    raw, pre152 = _outputs("ir152")
    np.testing.assert_array_equal(raw, pre152)
    assert np.all(np.abs(np.linalg.norm(raw, axis=1) - 1.0) > 0.1)
    # the object call is the same jitted apply
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(np.asarray(irse50(x)), emb, atol=1e-6)
    with pytest.raises(ValueError, match="112, 112, 3"):
        irse50.apply(irse50.params, np.zeros((1, 128, 128, 3), np.float32))


@pytest.mark.parametrize("name", ["irse50", "ir152", "ir50"])
def test_converter_names_offending_keys(name):
    broken = dict(_weights(name))
    del broken["body.5.res_layer.1.weight"]
    broken["body.99.res_layer.0.weight"] = np.zeros((64,), np.float32)
    broken["output_layer.3.weight"] = broken["output_layer.3.weight"][:, :100]
    with pytest.raises(CheckpointKeyError) as err:
        LOADERS[name](broken)
    msg = str(err.value)
    assert "missing keys (1): body.5.res_layer.1.weight" in msg
    assert "unexpected keys (1): body.99.res_layer.0.weight" in msg
    assert "output_layer.3.weight: checkpoint (512, 100) != expected (512, 25088)" in msg
    assert name in msg


@pytest.mark.parametrize("name, file", [("irse50", "irse50.pth"), ("ir152", "ir152.pth"), ("ir50", "arcface.pth")])
def test_no_shipped_weights(name, file):
    with pytest.raises(ValueError, match=file):
        LOADERS[name](None)


def _torch_save_state_dict(weights, golden, path):
    """Write ``weights`` as a real state-dict .pth: state-dict key order, int64 ``num_batches_tracked`` buffers."""
    torch = pytest.importorskip("torch")
    sd = {}
    for k in (str(k) for k in golden["keys"]):
        sd[k] = torch.tensor(7, dtype=torch.long) if k.endswith("num_batches_tracked") else torch.from_numpy(weights[k])
    torch.save(sd, path)


@pytest.mark.parametrize("name", ["irse50", "ir50"])
def test_real_layout_pth_loads(name, tmp_path):
    golden = ir50_golden_like() if name == "ir50" else _golden(name)
    path = tmp_path / f"{name}.pth"
    _torch_save_state_dict(_weights(name), golden, path)
    net = LOADERS[name](str(path))
    a, b = flatten(net.params), flatten(_net(name).params)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


@pytest.mark.parametrize("name, suffix", [("irse50", ".npz"), ("ir152", ".safetensors")])
def test_convert_round_trip(name, suffix, tmp_path):
    net = _net(name)
    path = tmp_path / f"{name}{suffix}"
    save_flat(path, flatten(net.params))
    again = load_network(name, path)
    assert again.module == net.module
    for a, b in zip(_outputs(name), _run(again, _input(name))):
        np.testing.assert_array_equal(a, b)


def test_ir50_key_list_is_face_evolve_ir50():
    """The derived IR_50 keys follow IR_152's pattern (same unit modules) with IR-SE-50's 3/4/14/3 units."""
    like = ir50_golden_like()
    ir50 = {str(k): str(s) for k, s in zip(like["keys"], like["shapes"])}
    g152 = _golden("ir152")
    ir152 = {str(k): str(s) for k, s in zip(g152["keys"], g152["shapes"])}
    pos50, pos152 = _unit_index(50), _unit_index(152)
    to152 = {pos: i for i, pos in enumerate(pos152)}

    def as152(key):
        if not key.startswith("body."):
            return key
        _, i, rest = key.split(".", 2)
        return f"body.{to152[pos50[int(i)]]}.{rest}"

    mapped = {as152(k): s for k, s in ir50.items()}
    units152_used = {to152[p] for p in pos50}
    expected = {k: s for k, s in ir152.items() if not k.startswith("body.") or int(k.split(".")[1]) in units152_used}
    assert mapped == expected
    assert {k for k in ir50 if "shortcut_layer.0" in k} == {f"body.{i}.shortcut_layer.0.weight" for i in (3, 7, 21)}
    # and exactly the module's params (num_batches_tracked are int buffers, dropped on load)
    shapes = param_shapes(Backbone(50, se=False, normalize=False), np.zeros((1, 112, 112, 3), np.float32))
    assert {k: ",".join(map(str, s)) for k, s in shapes.items()} == {
        k: s for k, s in ir50.items() if not k.endswith("num_batches_tracked")
    }


def test_ir50_loads_rule_weights_and_runs(tmp_path):
    """IR-50 has no golden file. It is ``Backbone(50, se=False)``: the 3/4/14/3 unit layout that the irse50 golden
    checks, built from the ``bottleneck_IR`` unit and the un-normalised head that the ir152 golden checks; so every
    op on its path is covered by a parity test. Here: a rule-generated state dict with the derived IR-50 key list
    loads through ``load_network("ir50", ...)`` (and through the ``jaxprotect convert`` command from a torch file),
    runs, and equals IR-SE-50 with the SE gate made a constant 1/2 (``fc2 = 0``) folded into the last BN.
    """
    weights = _weights("ir50")
    net = load_network("ir50", weights)
    assert net.input_size == (112, 112) and net.module == Backbone(50, se=False, normalize=False)
    x = _input("ir50")
    emb, pre = _run(net, x)
    assert emb.shape == (2, 512) and np.all(np.isfinite(emb))
    np.testing.assert_array_equal(emb, pre)  # no L2 norm upstream
    assert np.std(emb[0] - emb[1]) > 0.1 * np.std(emb)

    # convert command: original .pth -> .npz cache -> same params
    pth, npz = tmp_path / "arcface.pth", tmp_path / "arcface.npz"
    _torch_save_state_dict(weights, ir50_golden_like(), pth)
    assert convert.run(argparse.Namespace(kind="ir50", source=str(pth), output=str(npz))) == 0
    cached = load_network("ir50", npz)
    for k, v in flatten(net.params).items():
        np.testing.assert_array_equal(np.asarray(flatten(cached.params)[k]), np.asarray(v), err_msg=k)

    # IR-SE-50 with sigmoid(fc2(...)) = 1/2 everywhere == IR-50 with the last BN of each branch halved
    se = dict(_weights("irse50"))
    for k in [k for k in se if k.endswith("res_layer.5.fc2.weight")]:
        se[k] = np.zeros_like(se[k])
    plain = {k: v for k, v in se.items() if ".res_layer.5." not in k}
    for k in [k for k in plain if k.endswith(("res_layer.4.weight", "res_layer.4.bias"))]:
        plain[k] = plain[k] * np.float32(0.5)
    _, pre_se = _run(load_irse50(se), x)
    emb_ir50, _ = _run(load_ir50(plain), x)
    np.testing.assert_allclose(emb_ir50, pre_se, rtol=0, atol=2e-5)
