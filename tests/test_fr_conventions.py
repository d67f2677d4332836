"""AMT-GAN thresholds and input convention (crop, (x-0.5)*2, bilinear without antialias)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprotect import face_conventions as frc
from jaxprotect.recognition import cosine
from jaxprotect.ops.resize import interpolate

# spec §1.6: AMT-GAN test.py th_dict; CLIP2Protect uses the FAR 0.01 column
SPEC = {
    "ir152": (0.094632, 0.166788, 0.227922),
    "irse50": (0.144840, 0.241045, 0.312703),
    "facenet": (0.256587, 0.409131, 0.591191),
    "mobile_face": (0.183635, 0.301611, 0.380878),
}
CLIP2PROTECT = {"mobile_face": 0.301611, "facenet": 0.409131, "irse50": 0.241045, "ir152": 0.166788}


@pytest.mark.parametrize("model", sorted(SPEC))
def test_thresholds(model):
    got = tuple(frc.threshold(model, far) for far in frc.FARS)
    assert got == SPEC[model]
    assert got[0] < got[1] < got[2]  # a lower false-accept rate needs a stricter threshold
    assert frc.threshold(model) == CLIP2PROTECT[model]


def test_threshold_errors():
    with pytest.raises(ValueError, match="mobilefacenet_foamliu"):
        frc.threshold("mobilefacenet_foamliu")
    with pytest.raises(ValueError, match="0.05"):
        frc.threshold("ir152", 0.05)


def test_box_slices_round_half_to_even_and_clip():
    assert frc.box_slices((10.5, 11.5, 100.5, 120.49), (200, 200)) == (12, 120, 10, 100)
    assert frc.box_slices((10.5, 11.5, 100.5, 120.49), (200, 200), margin=3) == (9, 123, 7, 103)
    assert frc.box_slices((-3.0, 1.0, 30.0, 19.6), (20, 20)) == (1, 20, 0, 20)  # clipped to the image
    with pytest.raises(ValueError, match="empty crop"):
        frc.box_slices((5.0, 5.0, 5.2, 5.2), (20, 20))


@pytest.mark.parametrize("model, size", [("facenet", (160, 160)), ("mobileface", (112, 112)), ((37, 53), (37, 53))])
def test_input_matches_torch(model, size):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    img = rng.random((2, 200, 180, 3), dtype=np.float32)
    box = frc.box_slices((20.6, 15.2, 150.5, 190.5), (200, 180))
    got = np.asarray(frc.amt_gan_input(img, model, box))
    y0, y1, x0, x1 = box
    t = torch.from_numpy(img).permute(0, 3, 1, 2)[:, :, y0:y1, x0:x1]
    want = torch.nn.functional.interpolate((t - 0.5) * 2, size=size, mode="bilinear", align_corners=False)
    np.testing.assert_allclose(got, want.permute(0, 2, 3, 1).numpy(), rtol=0, atol=2e-6)
    assert got.shape == (2, *size, 3)
    crop = (img[:, y0:y1, x0:x1] - 0.5) * 2
    np.testing.assert_array_equal(got, np.asarray(interpolate(crop, size, mode="bilinear")))


def test_input_gradient_stays_in_the_box():
    img = jnp.full((1, 64, 64, 3), 0.5)
    box = (10, 40, 20, 50)
    g = np.asarray(jax.grad(lambda x: jnp.sum(frc.amt_gan_input(x, 112, box)))(img))
    inside = np.zeros_like(g, bool)
    inside[:, 10:40, 20:50] = True
    assert np.all(g[~inside] == 0) and np.all(g[inside] > 0)


def test_cosine_and_match():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((5, 512), np.float32), rng.standard_normal((5, 512), np.float32)
    b[0] = a[0] * 3 + 0.1 * b[0]
    want = torch.cosine_similarity(torch.from_numpy(a), torch.from_numpy(b), dim=1).numpy()
    got = np.asarray(cosine(a, b))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(frc.amt_gan_match(a, b, "ir152"), want > 0.166788)
    np.testing.assert_array_equal(frc.is_match(want, 0.166788), want > 0.166788)
    assert frc.is_match(0.5, 0.6, higher_is_closer=False) is True


def _detections(boxes, probs):
    from types import SimpleNamespace

    return SimpleNamespace(boxes=np.asarray(boxes, np.float32), probs=np.asarray(probs, np.float32))


def test_pick_face_best_or_largest():
    det = _detections([[0, 0, 10, 10], [0, 0, 50, 50], [5, 5, 20, 20]], [0.99, 0.8, 0.999])
    assert frc.pick_face(det, "best") == 2 and frc.pick_face(det, "largest") == 1
    assert frc.pick_face(_detections(np.zeros((0, 4)), []), "best") is None


def test_select_faces_says_why_each_face_was_skipped():
    det = _detections([[0, 0, 10, 10], [0, 0, 50, 50], [5, 5, 40, 40], [60, 60, 100, 100]], [0.99, 0.95, 0.75, 0.99])
    every = frc.select_faces(det)
    assert every.indices == [0, 1, 2, 3] and every.skipped == []
    sel = frc.select_faces(det, "all", min_prob=0.9, min_size=20, warn_below=0.7)
    assert sel.indices == [1, 3]
    reasons = {s["index"]: s["reason"] for s in sel.skipped}
    assert "probability" in reasons[2] and "px" in reasons[0]
    assert len(sel.warnings) == 1 and "face 2" in sel.warnings[0] and "NOT protected" in sel.warnings[0]
    assert frc.select_faces(det, "largest").indices == [1]
    two = frc.select_faces(det, 2)
    assert two.indices == [1, 3] and all("largest" in s["reason"] for s in two.skipped)
    with pytest.raises(ValueError):
        frc.select_faces(det, "some")
