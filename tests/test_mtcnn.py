"""MTCNN: packed pyramid, converter, shipped weights, bookkeeping.

Parity of the nets and of the cascade on real photos with the facenet-pytorch golden is in test_golden_parity.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprotect.checkpoints.state_dict import CheckpointKeyError, flatten, load_state_dict, save_flat
from jaxprotect.detect import mtcnn_boxes as mb
from jaxprotect.detect.mtcnn import NETS, load_mtcnn, mtcnn_params
from jaxprotect.detect.mtcnn_nets import PNet
from jaxprotect.detect.mtcnn_pyramid import pack, pnet_output_size
from helpers import parity
from helpers.golden import ASSETS, asset_path, load_golden

GOLDEN = "mtcnn_real.npz"
WEIGHTS = ASSETS / "weights"


@pytest.fixture(scope="module")
def golden():
    return load_golden(GOLDEN)


@pytest.fixture(scope="module")
def detector():
    """The golden's detector: real weights through the converter (the original .pt files when present, else the
    shipped npz)."""
    return parity.network(GOLDEN)


@pytest.fixture(scope="module")
def params(detector):
    return detector.params


def nchw(x):
    return jnp.asarray(np.transpose(x, (0, 2, 3, 1)))


def test_pnet_packed_in_a_canvas_gives_the_same_outputs(golden, params):
    """The mask lets one call run a level placed anywhere (even origin) beside other content."""
    x = nchw(golden["pnet_input"])[:1]
    canvas = np.random.default_rng(0).uniform(-1, 1, (1, 64, 96, 3)).astype(np.float32)
    mask = np.zeros((1, 64, 96), np.float32)
    y0, x0 = 6, 38
    canvas[0, y0:y0 + 37, x0:x0 + 53] = x[0]
    mask[0, y0:y0 + 37, x0:x0 + 53] = 1
    with jax.default_matmul_precision("highest"):
        want = PNet().apply({"params": params["pnet"]}, x)
        got = PNet().apply({"params": params["pnet"]}, jnp.asarray(canvas), jnp.asarray(mask))
    oh, ow = pnet_output_size(37, 53)
    assert (oh, ow) == want[0].shape[1:3]
    for w, g in zip(want, got):
        region = np.asarray(g)[0, y0 // 2:y0 // 2 + oh, x0 // 2:x0 // 2 + ow]
        np.testing.assert_allclose(region, np.asarray(w)[0], atol=1e-6)


@pytest.mark.parametrize(
    "i", [i if i in parity.MTCNN_FAST else pytest.param(i, marks=pytest.mark.slow) for i in range(parity.MTCNN_PHOTOS)])
def test_detections_are_best_first(i):
    """On the golden's photos (detections as the golden parity test has them): best first, as detect() returns."""
    probs = parity.ours("mtcnn_real.npz", f"img{i:02d}_probs")
    assert (np.diff(probs) <= 0).all()


def test_no_face_gives_empty_detections(detector):
    yy, xx = np.mgrid[0:120, 0:160]
    smooth = np.stack([yy * 2, xx, 255 - yy], axis=-1).astype(np.uint8)
    found = detector.detect(smooth)
    assert found.boxes.shape == (0, 4) and found.probs.shape == (0,) and found.landmarks.shape == (0, 5, 2)


def test_boxes_wholly_outside_the_photo_are_dropped(params):
    from jaxprotect.detect import mtcnn_cascade as mc

    table = mb.integral_image(np.full((40, 50, 3), 128, np.uint8))
    boxes = np.array([[60, 5, 80, 25, 0.9], [-30, -30, -10, -10, 0.8]], np.float32)  # right of / above the photo
    crops, kept = mc._crops(table, boxes, 50, 40, 24)
    assert crops.shape == (0, 24, 24, 3) and kept.shape == (0,)
    reg, prob = mc._run_batched(mc._rnet, params["rnet"], crops)
    assert reg.shape == (0, 4) and prob.shape == (0, 2)
    assert mc._stage_two(params["rnet"], table, boxes, 50, 40, 0.7).shape == (0, 5)


def test_detect_rejects_non_rgb(detector):
    with pytest.raises(ValueError, match="RGB"):
        detector.detect(np.zeros((50, 50), np.uint8))


# --- converter, shipped weights, loaders -------------------------------------------------------


def _real_mapping():
    return {f"{n}.{k}": v for n in NETS for k, v in load_state_dict(asset_path(f"weights/mtcnn_{n}.pt")).items()}


def test_shipped_weights_equal_the_originals():
    from ported_weights import shipped

    shipped_flat = load_state_dict(shipped("mtcnn.npz"))
    original = _real_mapping()
    assert sorted(shipped_flat) == sorted(original)
    for k, v in original.items():
        np.testing.assert_array_equal(shipped_flat[k], v, err_msg=k)


def test_converter_script_reproduces_the_shipped_file(tmp_path):
    from ported_weights import convert_mtcnn, sha256_file, shipped

    asset_path("weights/mtcnn_pnet.pt")
    out = convert_mtcnn.convert(WEIGHTS, tmp_path / "mtcnn.npz")
    assert sha256_file(out) == sha256_file(shipped("mtcnn.npz"))


@pytest.mark.parametrize("form", ["folder", "mapping", "none"])
def test_loader_forms_agree(params, form):
    if form == "folder":
        asset_path("weights/mtcnn_pnet.pt")
        got = load_mtcnn(WEIGHTS).params
    elif form == "mapping":
        got = load_mtcnn(flatten(params)).params
    else:
        got = load_mtcnn().params
    for k, v in flatten(params).items():
        np.testing.assert_array_equal(flatten(got)[k], v, err_msg=k)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_convert_command_round_trip(tmp_path, params, suffix):
    from jaxprotect.commands import convert

    parser = argparse.ArgumentParser()
    convert.add_arguments(parser)
    source = tmp_path / "cache.npz"
    save_flat(source, flatten(params))
    out = tmp_path / f"again{suffix}"
    assert convert.run(parser.parse_args(["mtcnn", str(source), str(out)])) == 0
    again = load_mtcnn(out).params
    for k, v in flatten(params).items():
        np.testing.assert_array_equal(flatten(again)[k], v, err_msg=k)


def test_registry_loads_mtcnn():
    from jaxprotect.registry import load_network

    assert sorted(load_network("mtcnn").params) == sorted(NETS)


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda sd: sd.pop("rnet.dense4.weight"), "rnet.dense4.weight"),  # missing (named without prefix)
        (lambda sd: sd.__setitem__("onet.extra.weight", np.zeros(3)), "extra.weight"),
        (lambda sd: sd.__setitem__("pnet.conv1.weight", np.zeros((10, 3, 5, 5))), "conv1.weight"),
        (lambda sd: sd.__setitem__("qnet.conv1.weight", np.zeros(1)), "qnet.conv1.weight"),
    ],
)
def test_converter_names_bad_keys(params, edit, named):
    sd = dict(flatten(params))
    edit(sd)
    with pytest.raises(CheckpointKeyError) as err:
        mtcnn_params(sd)
    assert named.split(".", 1)[-1] in str(err.value)


def test_loader_rejects_a_single_pt_file():
    with pytest.raises(ValueError, match="folder"):
        load_mtcnn(asset_path("weights/mtcnn_pnet.pt"))


# --- bookkeeping -------------------------------------------------------------------------------


def test_area_resize_is_torch_area_interpolation_bit_for_bit():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (57, 83, 3), dtype=np.uint8)
    table = mb.integral_image(image)
    t = torch.as_tensor(image[None].copy()).permute(0, 3, 1, 2).float()
    for (y0, y1, x0, x1), size in [((0, 57, 0, 83), (31, 45)), ((3, 40, 10, 22), (24, 24)), ((5, 57, 0, 83), (48, 48))]:
        want = torch.nn.functional.interpolate(t[:, :, y0:y1, x0:x1], size=size, mode="area")
        want = want[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(mb.area_resize(table, y0, y1, x0, x1, *size), want)
    boxes = np.array([[0, 57, 0, 83], [3, 40, 10, 22], [10, 13, 70, 83]])
    got = mb.area_resize_boxes(table, boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3], 24)
    for g, (y0, y1, x0, x1) in zip(got, boxes):
        np.testing.assert_array_equal(g, mb.area_resize(table, y0, y1, x0, x1, 24, 24))


def test_nms_follows_torchvision_semantics():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 15], [0, 0, 10, 20], [30, 30, 40, 40]], np.float32)
    scores = np.array([0.9, 0.8, 0.95, 0.5], np.float32)
    # areas without +1: IoU(box2, box0) = 100/200 = 0.5 is kept at threshold 0.5 (only > suppresses);
    # IoU(box2, box1) = 150/200 = 0.75 suppresses box1
    np.testing.assert_array_equal(mb.nms(boxes, scores, 0.5), [2, 0, 3])
    np.testing.assert_array_equal(mb.nms(boxes, scores, 0.49), [2, 3])
    np.testing.assert_array_equal(mb.nms(boxes, scores, 0.8), [2, 0, 1, 3])
    assert mb.nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).shape == (0,)


def test_nms_min_uses_smaller_area_with_plus_one_extents():
    boxes = np.array([[0, 0, 9, 9], [0, 0, 19, 19], [0, 0, 9, 4]], np.float32)  # areas 100, 400, 50
    scores = np.array([0.9, 0.95, 0.5], np.float32)
    # box0 inside box1: 100/min(400,100) = 1 > 0.7 -> dropped; box2 likewise
    np.testing.assert_array_equal(mb.nms_min(boxes, scores, 0.7), [1])
    np.testing.assert_array_equal(mb.nms_min(boxes[[0, 2]], scores[[0, 2]], 1.0), [0, 1])


def test_rerec_and_pad():
    boxes = np.array([[10, 20, 30, 60, 0.9], [-5.7, -3.2, 500.5, 420.9, 0.8]], np.float32)
    sq = mb.rerec(boxes)
    np.testing.assert_allclose(sq[0, :4], [0, 20, 40, 60])
    assert sq[0, 4] == np.float32(0.9)
    y, ey, x, ex = mb.pad(boxes, 400, 300)
    np.testing.assert_array_equal(x, [10, 1])  # truncation toward zero, then >= 1
    np.testing.assert_array_equal(ey, [60, 300])  # ends clipped to the image
    np.testing.assert_array_equal(ex, [30, 400])


def test_pyramid_packing_places_levels_apart_on_even_origins():
    sizes = [(953, 1369), (676, 971), (479, 688), (340, 488), (241, 346), (171, 246), (121, 174), (86, 124),
             (61, 88), (43, 63), (31, 45), (22, 32), (16, 23)]
    origins, (h, w) = pack(sizes)
    used = np.zeros((h, w), int)
    for (sh, sw), (y, x) in zip(sizes, origins):
        assert y % 2 == 0 and x % 2 == 0
        used[y:y + sh + 2, x:x + sw + 2] += 1
    assert used.max() == 1
    assert sum(a * b for a, b in sizes) / (h * w) > 0.75


@pytest.mark.parametrize("n", [1, 15, 16, 17, 37, 100, 293, 1024, 1500, 2100])
def test_crop_batches_cover_every_crop_with_bounded_padding(n):
    from jaxprotect.detect.mtcnn_cascade import _BATCHES, _chunk_sizes

    chunks = _chunk_sizes(n)
    assert sum(count for count, _ in chunks) == n
    assert all(size in _BATCHES and 0 < count <= size for count, size in chunks)
    padded = sum(size for _, size in chunks)
    assert padded <= max(1.5 * n, _BATCHES[0]) + _BATCHES[0]


def test_chunked_r_net_equals_one_padded_batch(params):
    from jaxprotect.detect.mtcnn_cascade import _rnet, _run_batched

    crops = np.random.default_rng(1).uniform(-1, 1, (293, 24, 24, 3)).astype(np.float32)
    with jax.default_matmul_precision("highest"):
        got = _run_batched(_rnet, params["rnet"], crops)
        padded = np.zeros((1024, 24, 24, 3), np.float32)
        padded[:293] = crops
        want = [np.asarray(o)[:293] for o in _rnet(params["rnet"], padded)]
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=1e-6)
