"""foamliu MobileFaceNet-128: shipped weights and converter.

Parity of the real network's outputs on LFW faces with the golden is in test_golden_parity.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from jaxprotect import load_network
from jaxprotect.checkpoints.state_dict import CheckpointKeyError, flatten, load_flat, load_state_dict, save_flat
from jaxprotect.models.mobilefacenet_foamliu import foamliu_param_shapes
from helpers.golden import asset_path, load_golden

PORTED = Path(__file__).resolve().parent.parent / "ported_weights"


def _converter():
    spec = importlib.util.spec_from_file_location("convert_foamliu", PORTED / "convert_mobilefacenet_foamliu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gold():
    return load_golden("mobilefacenet_foamliu_real.npz")


@pytest.fixture(scope="module")
def net():
    return load_network("mobilefacenet_foamliu")  # shipped weights


def test_shipped_weights_equal_original_file(gold):
    original = load_state_dict(asset_path("weights/mobilefacenet_foamliu.pt"))
    shipped = load_flat(PORTED / "mobilefacenet_foamliu.npz")
    assert set(original) == {str(k) for k in gold["keys"]}
    assert set(shipped) == {k for k in original if not k.endswith("num_batches_tracked")}
    for k, v in shipped.items():
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v, original[k], err_msg=k)


def test_original_pt_loads_like_shipped(net):
    from_pt = load_network("mobilefacenet_foamliu", asset_path("weights/mobilefacenet_foamliu.pt"))
    a, b = flatten(net.params), flatten(from_pt.params)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_converter_script_reproduces_shipped_file(tmp_path):
    convert = _converter()
    source = asset_path("weights/mobilefacenet_foamliu.pt")
    out = tmp_path / "again.npz"
    assert convert.main([str(source), str(out)]) == 0
    again, shipped = load_flat(out), load_flat(PORTED / "mobilefacenet_foamliu.npz")
    assert again.keys() == shipped.keys()
    for k in again:
        np.testing.assert_array_equal(again[k], shipped[k], err_msg=k)
    with pytest.raises(ValueError, match="sha256"):
        convert.convert(asset_path("weights/mtcnn_pnet.pt"), tmp_path / "no.npz")


def test_converter_names_bad_keys(net):
    flat = {k: np.asarray(v) for k, v in flatten(net.params).items()}
    del flat["features.7.conv.1.1.running_var"]
    flat["features.15.conv.0.0.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    flat["gdconv.depthwise.weight"] = flat["gdconv.depthwise.weight"][:, :, :3, :3]
    with pytest.raises(CheckpointKeyError) as err:
        load_network("mobilefacenet_foamliu", flat)
    msg = str(err.value)
    for key in ("features.7.conv.1.1.running_var", "features.15.conv.0.0.weight", "gdconv.depthwise.weight"):
        assert key in msg


def test_param_layout_is_the_state_dict(gold):
    expected = {str(k): tuple(int(d) for d in str(s).split(",")) for k, s in zip(gold["keys"], gold["shapes"])
                if not str(k).endswith("num_batches_tracked")}
    assert foamliu_param_shapes() == expected


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_convert_round_trip(net, tmp_path, suffix):
    path = tmp_path / f"foamliu{suffix}"
    save_flat(path, flatten(net.params))
    again = load_network("mobilefacenet_foamliu", path)
    a, b = flatten(net.params), flatten(again.params)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
    assert again.input_size == (112, 112) and again.input_range == (-1.0, 1.0)
