"""FaceNet-CASIA: TF GraphDef -> facenet-pytorch params, checked against the cv2 blobs of the golden.

Parity with cv2.dnn's embeddings on real LFW faces is in test_golden_parity.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from jaxprotect import load_network
from jaxprotect.checkpoints.state_dict import CheckpointKeyError, flatten, save_flat
from jaxprotect.checkpoints.tf_graphdef import GraphDefError, graph_constants, read_graphdef
from jaxprotect.models.facenet_casia import GRAPH_SHA256, casia_state_dict, graph_path, tf_scopes
from jaxprotect.ops.cv_resize import resize_linear_u8
from helpers.golden import load_golden


@pytest.fixture(scope="module")
def gold():
    return load_golden("facenet_casia_real.npz")  # large golden: ../shared/golden only


@pytest.fixture(scope="module")
def pb():
    try:
        return graph_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def constants(pb):
    return graph_constants(pb)


@pytest.fixture(scope="module")
def net(pb):
    return load_network("facenet_casia")


def _sha256(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_graph_is_the_golden_one(pb, gold):
    assert _sha256(pb) == GRAPH_SHA256 == str(gold["graph_sha256"])


def test_name_map_matches_golden(gold):
    golden_map = json.loads(str(gold["tf_to_facenet_pytorch_json"]))
    expected = {tf: desc.split()[0] for tf, desc in golden_map.items() if tf.startswith("InceptionResnetV1/")}
    basic, up, _ = tf_scopes()
    ours = {}
    for pt, tf in basic.items():
        ours[f"InceptionResnetV1/{tf}/weights"] = f"{pt}.conv.weight"
        ours[f"InceptionResnetV1/{tf}/Conv2D_bn_offset"] = f"{pt}.bn.bias"
    for pt, tf in up.items():
        ours[f"InceptionResnetV1/{tf}/weights"] = f"{pt}.conv2d.weight"
        ours[f"InceptionResnetV1/{tf}/biases"] = f"{pt}.conv2d.bias"
    bn = {"moving_mean": "running_mean", "moving_variance": "running_var", "beta": "bias"}
    ours.update({f"InceptionResnetV1/Bottleneck/BatchNorm/{k}": f"last_bn.{v}" for k, v in bn.items()})
    ours["InceptionResnetV1/Bottleneck/weights"] = "last_linear.weight"
    assert ours == expected


def test_reader_matches_cv2_blobs_in_golden(net, gold):
    p = net.params
    np.testing.assert_array_equal(p["conv2d_1a"]["conv"]["weight"], gold["conv1a_weight"])
    np.testing.assert_array_equal(p["conv2d_1a"]["bn"]["bias"], gold["conv1a_bias"])
    np.testing.assert_array_equal(p["last_bn"]["running_mean"], gold["last_bn_mean"])
    np.testing.assert_array_equal(p["last_bn"]["running_var"], gold["last_bn_var"])
    np.testing.assert_array_equal(p["last_bn"]["bias"], gold["last_bn_beta"])
    np.testing.assert_array_equal(p["last_bn"]["weight"], np.ones(512, np.float32))
    assert "logits" not in p and net.input_size == (160, 160)


def test_reader_matches_cv2_dnn(pb, net):
    cv2 = pytest.importorskip("cv2")
    reader = cv2.dnn.readNetFromTensorflow(str(pb))
    basic, up, _ = tf_scopes()
    flat = flatten(net.params)
    checked = 0
    for pt, tf in list(basic.items()) + [(f"{k}.conv2d", v) for k, v in up.items()]:
        layer = reader.getLayer(reader.getLayerId(f"InceptionResnetV1/{tf}/Conv2D"))
        w, b = layer.blobs[0], layer.blobs[1]
        key_w = f"{pt}.conv.weight" if not pt.endswith("conv2d") else f"{pt}.weight"
        key_b = f"{pt}.bn.bias" if not pt.endswith("conv2d") else f"{pt}.bias"
        np.testing.assert_array_equal(flat[key_w], w, err_msg=key_w)
        np.testing.assert_array_equal(flat[key_b], b.reshape(-1), err_msg=key_b)
        checked += 1
    assert checked == 132
    fc = reader.getLayer(reader.getLayerId("InceptionResnetV1/Bottleneck/MatMul")).blobs[0]
    np.testing.assert_array_equal(flat["last_linear.weight"], fc)


def test_cv_resize_is_bit_exact():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    sizes = [(112, 112, 160, 160), (56, 40, 112, 112), (250, 190, 160, 160), (160, 160, 37, 53), (5, 7, 3, 2)]
    for h, w, oh, ow in sizes:
        for c in (1, 3):
            img = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
            want = cv2.resize(img, (ow, oh), interpolation=cv2.INTER_LINEAR).reshape(oh, ow, c)
            np.testing.assert_array_equal(resize_linear_u8(img, (oh, ow)), want, err_msg=f"{(h, w, oh, ow, c)}")


def test_converter_names_missing_and_unexpected_constants(constants):
    broken = dict(constants)
    del broken["InceptionResnetV1/Repeat_1/block17_4/Branch_1/Conv2d_0b_1x7/Conv2D_bn_offset"]
    broken["InceptionResnetV1/Repeat_1/block17_11/Conv2d_1x1/weights"] = np.zeros((1, 1, 256, 896), np.float32)
    broken["InceptionResnetV1/Repeat_2/block8_2/mul/x"] = np.float32(0.3)
    with pytest.raises(CheckpointKeyError) as err:
        casia_state_dict(broken)
    msg = str(err.value)
    assert "Repeat_1/block17_4/Branch_1/Conv2d_0b_1x7/Conv2D_bn_offset (for repeat_2.3.branch1.1.bn.bias)" in msg
    assert "InceptionResnetV1/Repeat_1/block17_11/Conv2d_1x1/weights" in msg
    assert "Repeat_2/block8_2/mul/x = 0.3" in msg


def test_tf_mapping_and_state_dict_inputs(constants, net):
    via_tf = load_network("facenet_casia", constants)
    sd = casia_state_dict(constants)
    via_sd = load_network("facenet_casia", sd)
    for other in (via_tf, via_sd):
        for k, v in flatten(net.params).items():
            np.testing.assert_array_equal(flatten(other.params)[k], v, err_msg=k)
    with pytest.raises(CheckpointKeyError, match="logits"):
        load_network("facenet_casia", dict(sd, **{"logits.weight": np.zeros((3, 512)), "logits.bias": np.zeros(3)}))


def test_convert_round_trip(net, tmp_path):
    path = tmp_path / "facenet_casia.safetensors"
    save_flat(path, flatten(net.params))
    again = load_network("facenet_casia", path)
    a, b = flatten(net.params), flatten(again.params)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_graph_reader_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\x0a\xff\xff\xff\xff\x0f" + b"\x00" * 8)  # field 1, absurd length
    with pytest.raises(GraphDefError, match="bad.pb"):
        read_graphdef(bad)
    empty = tmp_path / "empty.pb"
    empty.write_bytes(b"")
    with pytest.raises(GraphDefError, match="no nodes"):
        read_graphdef(empty)
