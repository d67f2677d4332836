"""FaceCloak units on tiny sizes: config, losses, the optimiser loop (scan vs steps, padding, vmap), stickers,
high-pass, anchors, scoring, application, resizing against torch, synthetic sets and the cloak file."""
from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprotect.detect.mtcnn_cascade import Detections
from jaxprotect.methods.facecloak import (
    anchors,
    apply,
    highpass,
    losses,
    optimise,
    preprocess,
    run,
    stickers,
    synthetic,
)
from jaxprotect.eval import topn as scoring
from jaxprotect.methods.facecloak.config import FaceCloakConfig
from helpers.tiny_recogniser import tiny_surrogate

S = 32  # crop size of the tiny tests (same code path as 112)


@pytest.fixture(scope="module")
def net():
    return tiny_surrogate(S, seed=0, dim=16)


def _crops(seed, n):
    return np.asarray(jax.random.uniform(jax.random.key(seed), (n, S, S, 3), minval=-1.0, maxval=1.0))


def _anchors(net, seed=5):
    s, p = net
    embs = np.array(s.apply(p, jnp.asarray(_crops(seed, 2))))
    embs /= np.linalg.norm(embs, axis=1, keepdims=True)
    return optimise.Anchors((jnp.asarray(embs[0]),), (jnp.asarray(embs[1]),))


def _geometry(config):
    layout = stickers.sticker_layout(stickers.fallback_landmarks(S), False, S)
    crop = _crops(9, 1)[0]
    return optimise.Geometry(jnp.asarray(stickers.region_masks(layout, S)), highpass.highpass_filter(jnp.asarray(crop)))


# ------------------------------------------------------------------------------------------ config, losses
def test_config_units_and_modes():
    f = FaceCloakConfig()
    assert f.eps == pytest.approx(8 / 255) and f.step == pytest.approx(2 / 255) and f.apply_scale == 255.0
    assert f.sticker_max == pytest.approx(32 / 255) and f.far_anchor_rule == "fixed"
    c = FaceCloakConfig(mode="corrected")
    assert c.eps == pytest.approx(16 / 255) and c.apply_scale == 127.5 and c.far_anchor_rule == "farthest"
    assert c.eps * c.apply_scale == pytest.approx(f.eps * f.apply_scale)  # same applied levels, one scale
    assert FaceCloakConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown FaceCloak settings: bogus"):
        FaceCloakConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="mode"):
        FaceCloakConfig(mode="paper")
    with pytest.raises(ValueError, match="far_anchor"):
        FaceCloakConfig(far_anchor="nearest")


def test_losses_are_cosine_differences():
    rng = np.random.default_rng(0)
    x, far, near = (rng.standard_normal(8).astype(np.float32) for _ in range(3))
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert float(losses.cosine_dist(x, far)) == pytest.approx(-cos(x, far), abs=1e-6)
    assert float(losses.triplet_loss(x, far, near)) == pytest.approx(cos(x, near) - cos(x, far), abs=1e-6)
    assert float(losses.fawkes_loss(x, far)) == pytest.approx(-cos(x, far), abs=1e-6)
    assert float(losses.untarget_loss(x, far)) == pytest.approx(cos(x, far), abs=1e-6)
    batch = losses.surrogate_loss("triplet", jnp.asarray(np.stack([x, 2 * x])), far, near)
    np.testing.assert_allclose(np.asarray(batch), cos(x, near) - cos(x, far), atol=1e-6)


# ------------------------------------------------------------------------------------------ optimiser
def test_step_formula(net):
    """One update = attn - 10·(g - mean)/(unbiased std + 0.01), pert - step·sign(g), from jax.grad."""
    s, p = net
    config = FaceCloakConfig(crop_size=S)
    crop = jnp.asarray(_crops(1, 1)[0])
    state = optimise.AfogState(jnp.ones((S, S, 3)), jnp.asarray(_crops(2, 1)[0]) * 0.03)
    a = _anchors(net)
    new, loss = optimise.afog_multi_step((s,), config, (p,), a, state, crop)
    f = lambda at, pe: optimise.cloak_loss((s,), "triplet", (p,), a, crop + at * pe)  # noqa: E731
    ga, gp = jax.grad(f, argnums=(0, 1))(state.attn, state.pert)
    ga, gp = np.asarray(ga, np.float64), np.asarray(gp)
    expect_attn = 1 - 10 * (ga - ga.mean()) / (ga.std(ddof=1) + 0.01)
    np.testing.assert_allclose(np.asarray(new.attn), expect_attn, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(new.pert), np.asarray(state.pert) - 2 / 255 * np.sign(gp), atol=1e-7)
    assert float(loss) == pytest.approx(float(f(state.attn, state.pert)), abs=1e-6)


def test_scan_equals_sequential_steps_and_padding_is_skipped(net):
    s, p = net
    config = FaceCloakConfig(epochs=2, crop_size=S)
    crops = jnp.asarray(_crops(3, 3))
    pert0 = optimise.afog_initial_perturbation(jax.random.uniform(jax.random.key(4), (S, S, 3)), config)
    a = _anchors(net)
    res = optimise.afog_cloak_multi((s,), config, (p,), crops, a, pert0)
    state = optimise.AfogState(jnp.ones_like(pert0), pert0)
    step = jax.jit(functools.partial(optimise.afog_multi_step, (s,), config))
    for _ in range(config.epochs):
        for k in range(3):  # probe last, sequential per image
            state, _ = step((p,), a, state, crops[k])
    np.testing.assert_allclose(np.asarray(res.state.attn), np.asarray(state.attn), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(res.state.pert), np.asarray(state.pert))
    np.testing.assert_array_equal(np.asarray(res.mask), np.clip(np.asarray(res.perturbation), -config.eps, config.eps))
    assert res.losses.shape == (6,)
    padded = jnp.concatenate([crops, jnp.zeros((2, S, S, 3))])
    res2 = optimise.afog_cloak_multi((s,), config, (p,), padded, a, pert0, valid=jnp.array([1, 1, 1, 0, 0], bool))
    np.testing.assert_array_equal(np.asarray(res2.state.pert), np.asarray(res.state.pert))


def test_vmap_over_identities_equals_one_by_one(net):
    s, p = net
    for mode in ("faithful", "corrected"):
        config = FaceCloakConfig(mode=mode, epochs=1, crop_size=S)
        geo = _geometry(config)
        crops = [jnp.asarray(_crops(10, 3)), jnp.asarray(_crops(11, 2))]
        a = [_anchors(net, 20), _anchors(net, 21)]
        pert = [optimise.afog_initial_perturbation(jax.random.uniform(jax.random.key(i), (S, S, 3)), config)
                for i in (30, 31)]
        single = [optimise.afog_cloak_multi((s,), config, (p,), c, an, pe, geo) for c, an, pe in zip(crops, a, pert)]
        stacked = jnp.stack([crops[0], jnp.concatenate([crops[1], jnp.zeros((1, S, S, 3))])])
        valid = jnp.array([[1, 1, 1], [1, 1, 0]], bool)
        anchors_b = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *a)
        geo_b = jax.tree_util.tree_map(lambda *x: jnp.stack(x), geo, geo)
        batch = optimise.afog_cloak_multi_batch((s,), config, (p,), stacked, anchors_b, jnp.stack(pert), geo_b, valid)
        for i in range(2):
            np.testing.assert_allclose(np.asarray(batch.mask[i]), np.asarray(single[i].mask), atol=1e-6)


def test_corrected_loss_sees_the_applied_delta_with_gradient(net):
    config = FaceCloakConfig(mode="corrected", crop_size=S)
    geo = _geometry(config)
    n = jnp.asarray(_crops(40, 1)[0]) * 0.5
    delta = np.asarray(optimise.applied_delta(n, geo, config))
    masks, filt = np.asarray(geo.masks), np.asarray(geo.filter)
    nn = np.asarray(n)
    sm, hm = config.sticker_max, config.highpass_max
    expect = (np.clip(nn, -config.eps, config.eps) + np.clip((masks * np.clip(nn, -sm, sm)[None]).sum(0), -sm, sm)
              + filt * np.clip(nn, -hm, hm))
    np.testing.assert_allclose(delta, expect, atol=1e-6)
    g = np.asarray(jax.grad(lambda x: jnp.sum(optimise.applied_delta(x, geo, config)))(n))
    assert np.all(g >= 1.0)  # straight-through: the clipped mask still passes its gradient


def test_other_functions_run_and_respect_budgets(net):
    s, p = net
    a = _anchors(net)
    crop = jnp.asarray(_crops(50, 1)[0])
    out = optimise.pgd_cloak((s,), "fawkes", 3, (p,), crop, a, 2 / 255, 8 / 255)
    assert np.abs(np.asarray(out - crop)).max() <= 8 / 255 + 1e-6
    out = optimise.afog_cloak((s,), "untarget", 3, (p,), crop, a, jnp.full((S, S, 3), 0.7), 2 / 255, 8 / 255)
    assert np.abs(np.asarray(out - crop)).max() <= 8 / 255 + 1e-6 and np.abs(np.asarray(out)).max() <= 1
    config = FaceCloakConfig(epochs=1, crop_size=S)
    geo = _geometry(config)
    state0 = optimise.PgdMultiState(jnp.zeros((S, S, 3)), jnp.zeros((4, S, S, 3)), highpass.initial_highpass(geo.filter))
    state, ls = optimise.pgd_cloak_multi((s,), config, (p,), jnp.asarray(_crops(51, 2)), a, state0, geo)
    assert ls.shape == (2,) and np.abs(np.asarray(state.pert)).max() <= config.eps + 1e-7
    assert np.abs(np.asarray(state.stickers)).max() <= config.sticker_max + 1e-7


# ------------------------------------------------------------------------------------------ stickers, high-pass
def test_sticker_layout_geometry():
    lm = np.array([[40.0, 45.0], [72.0, 45.0], [56.0, 62.0], [42.0, 85.0], [70.0, 85.0]], np.float32)
    layout = stickers.sticker_layout(lm, True, 112)
    np.testing.assert_array_equal(layout.sizes, [[10, 22], [10, 22], [28, 22], [28, 28]])
    np.testing.assert_array_equal(layout.boxes[0], [40, 50, 29, 51])  # [cy-5:cy+5, cx-11:cx+11]
    np.testing.assert_array_equal(layout.boxes[3], [71, 99, 42, 70])  # mouth centre (56, 85), width 28
    np.testing.assert_array_equal(layout.ranges, layout.boxes)
    masks = stickers.region_masks(layout, 112)
    assert masks[0].sum() == 220 and masks[2].sum() == 28 * 22


def test_sticker_slices_follow_python_rules_at_the_edges():
    lm = np.array([[3.0, 2.0], [110.0, 45.0], [56.0, 62.0], [60.0, 85.0], [51.0, 85.0]], np.float64)
    layout = stickers.sticker_layout(lm, True, 112)
    y0, y1 = layout.ranges[0][:2]  # rows -3:7 -> 109:7 (empty), as tensor slicing
    assert y1 == y0
    assert tuple(layout.ranges[1][2:]) == (99, 112)  # cut at the edge: 13 columns, not 22
    assert layout.sizes[3][1] == 0 and layout.ranges[3][3] == layout.ranges[3][2]  # mouth corners swapped: empty
    init = stickers.init_stickers(layout, key=jax.random.key(0))
    assert np.all(init[0] == 0) and np.all(init[1] == 0)  # the code's try/except skips stickers that do not fit
    assert np.abs(init[2]).max() <= 2 / 255 and np.abs(init[2]).max() > 0


def test_sticker_extract_and_image_mode():
    layout = stickers.sticker_layout(stickers.fallback_landmarks(112), False, 112)
    masks = jnp.asarray(stickers.region_masks(layout))
    pert = jnp.full((112, 112, 3), 0.5)
    layers = np.asarray(stickers.extract_stickers(pert, masks, 32 / 255))
    assert set(np.unique(layers)) == {0.0, np.float32(32 / 255)}
    region = jnp.full((112, 112, 3), 100.0)
    out = np.asarray(stickers.apply_stickers_image(region, jnp.asarray(layers), 32 / 255))
    assert out.max() == pytest.approx(132.0) and out.min() == 100.0  # overlaps clamp at ±32 levels


def test_highpass_kernel_blur_and_filter():
    k = highpass.gaussian_kernel1d()
    assert k.shape == (23,) and k.sum() == pytest.approx(1.0, abs=1e-6) and k[11] == k.max()
    flat = jnp.full((40, 40, 3), 0.3)
    np.testing.assert_allclose(np.asarray(highpass.gaussian_blur(flat)), 0.3, atol=1e-6)
    filt = np.asarray(highpass.highpass_filter(jnp.asarray(_crops(60, 1)[0])))
    assert set(np.unique(filt)) <= {0.0, 1.0} and 0.2 < filt.mean() < 0.8
    hp = np.asarray(highpass.extract_highpass(jnp.full((S, S, 3), -1.0), filt, 32 / 255))
    np.testing.assert_allclose(hp, -filt * 32 / 255, atol=1e-7)


# ------------------------------------------------------------------------------------------ anchors, scoring
def test_anchors():
    g = np.eye(4, dtype=np.float32)
    probe = np.array([0.9, 0.1, -0.5, 0.0], np.float32)
    assert list(anchors.closest(probe, g, 2)) == [0, 1]
    assert anchors.farthest(probe, g) == 2
    assert list(anchors.closest(probe, g, 1, exclude=0)) == [1]
    assert anchors.far_anchor(probe, g, "fixed", 3) == 3
    with pytest.raises(ValueError, match="override"):
        anchors.far_anchor(probe, g, "fixed")


def test_top_n_walk():
    # C = 4 same-identity gallery images; ranked list of same/other flags
    assert scoring.top_n_score([True, True, False, True], 1, 4) == 0.5  # stops at the first miss
    assert scoring.top_n_score([True, False, True, False, False, False, True, False], 5, 4) == 0.75
    assert scoring.top_n_score([True, False, True, False, False, False, False, True], 5, 4) == 0.5
    assert scoring.top_n_score([False] * 5 + [True], 5, 4) == 0.0  # the 5th miss ends the walk
    assert scoring.top_n_score([False, True], 1, 1) == 0.0
    sims = np.array([0.9, 0.2, 0.8, 0.1, 0.85])
    ids = ["a", "b", "a", "b", "c"]
    assert scoring.identification_score(sims, ids, "a", 1, 2) == 0.5
    assert scoring.identification_score(sims, ids, "a", 2, 2) == 1.0
    assert scoring.identification_score(-sims, ids, "a", 1, 2, higher_is_closer=False) == 0.5
    assert scoring.identification_score(sims, ids, "a", 1, 2, exclude=0) == 0.0  # self excluded -> c first
    assert scoring.protection_success_rate([1.0, 0.5, 0.0]) == 0.5


# ------------------------------------------------------------------------------------------ application
def _parts(value=0.02):
    mask = jnp.full((S, S, 3), value)
    return optimise.CloakParts(jnp.clip(mask, -8 / 255, 8 / 255), jnp.zeros((4, S, S, 3)), jnp.full((S, S, 3), -0.05))


def test_faithful_region_is_the_code_arithmetic():
    config = FaceCloakConfig(crop_size=S)
    region = jnp.full((S, S, 3), 50.0)
    out = np.asarray(apply.faithful_region(region, _parts(0.02), config))
    # mask ·255 = 5.1 -> int16 5; high-pass -0.05 unscaled -> 55 - 0.05 truncates to 54
    np.testing.assert_array_equal(out, 54.0)
    corrected = FaceCloakConfig(mode="corrected", crop_size=S)
    out = np.asarray(apply.corrected_region(region, _parts(0.02), corrected))
    np.testing.assert_allclose(out, 50 + 127.5 * (0.02 - 0.05), atol=1e-4)
    batch = np.asarray(apply.protect_regions(config, jnp.stack([region, region + 1]), _parts()))
    np.testing.assert_array_equal(batch[1] - batch[0], 1.0)


def test_apply_to_resized_pads_at_the_border():
    config = FaceCloakConfig(crop_size=S)
    image = np.full((40, 45, 3), 100.0, np.float32)
    out = apply.apply_to_resized(image, (30.2, 20.7, 62.0, 52.0), _parts(0.02), config)
    assert out.shape == (40, 45, 3) and out.dtype == np.uint8
    assert np.all(out[20:, 30:] == 104) and np.all(out[:20] == 100) and np.all(out[:, :30] == 100)


def test_paste_delta():
    photo = np.full((60, 80, 3), 100, np.uint8)
    assert np.array_equal(apply.paste_delta(photo, np.zeros((S, S, 3)), (5, 5), (1.0, 1.0)), photo)
    out = apply.paste_delta(photo, np.full((S, S, 3), 4.0), (10, 20), (1.0, 1.0))
    changed = np.argwhere(out[..., 0] != 100)
    assert changed[:, 0].min() == 10 and changed[:, 0].max() == 10 + S - 1
    assert changed[:, 1].min() == 20 and changed[:, 1].max() == 20 + S - 1 and out.max() == 104
    photo = np.full((80, 100, 3), 100, np.uint8)
    out = apply.paste_delta(photo, np.full((S, S, 3), 4.0), (0, 0), (0.5, 0.5))  # photo twice the resized size
    assert (out[..., 0] != 100).sum() == (2 * S) ** 2


# ------------------------------------------------------------------------------------------ preprocessing
def test_resize_matches_torch_single_thread():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(1)
        im = (rng.random((97, 131, 3)) * 255).astype(np.float32)
        sy, sx = 112 / 80.3, 112 / 101.9
        t = torch.from_numpy(im).permute(2, 0, 1).unsqueeze(0)
        ref = F.interpolate(t, scale_factor=(sy, sx), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
        ours, _, _ = preprocess.anisotropic_resize(im, (0.0, 0.0, 101.9, 80.3))
        np.testing.assert_array_equal(ours, ref)
        ref = F.interpolate(t, size=(112, 112), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(preprocess.resize_bilinear(im, (112, 112)), ref)
    finally:
        torch.set_num_threads(threads)


def test_box_rules_and_divide():
    assert preprocess.clamp_box((-5, 3, 500, 40), 50, 60) == (0.0, 3.0, 59.0, 40.0)
    assert preprocess.clamp_box((10, 10, 10.5, 30), 50, 60) == (0.0, 0.0, 59.0, 49.0)  # degenerate -> whole photo
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
    assert preprocess.largest_box(empty, 50, 60) == (0.0, 0.0, 59.0, 49.0)
    two = Detections(np.array([[0, 0, 10, 10], [0, 0, 20, 20]], np.float32), np.array([0.99, 0.9], np.float32),
                     np.zeros((2, 5, 2), np.float32))
    assert preprocess.largest_box(two, 50, 60) == (0.0, 0.0, 20.0, 20.0)  # select_largest, not best score
    np.testing.assert_array_equal(preprocess.divide(np.array([0, 127.5, 255])), [-1, 0, 1])


# ------------------------------------------------------------------------------------------ synthetic sets, file
def test_augment_is_seeded_and_prefix_stable():
    import skimage.data

    photo = skimage.data.astronaut()[:220, 100:330]
    box = (60.0, 40.0, 160.0, 170.0)
    a = synthetic.augment(photo, 4, jax.random.key(0), box=box, seed=0)
    b = synthetic.augment(photo, 2, jax.random.key(0), box=box)
    c = synthetic.augment(photo, 2, jax.random.key(1), box=box)
    assert a.source == "augment" and len(a) == 4 and a.describe() == "augment (4 images, seed 0)"
    assert all(x.shape == (256, 256, 3) and x.dtype == np.uint8 for x in a.images)
    assert all(np.array_equal(x, y) for x, y in zip(a.images[:2], b.images))
    assert not np.array_equal(a.images[0], c.images[0])
    assert np.mean(np.abs(a.images[0].astype(float) - a.images[1].astype(float))) > 5


def test_folder_and_real_sources(tmp_path):
    from PIL import Image

    (tmp_path / "a.png").write_bytes(b"")
    Image.fromarray(np.full((30, 30, 3), 9, np.uint8)).save(tmp_path / "b.png")
    (tmp_path / "notes.txt").write_text("not an image")
    s = synthetic.from_folder(tmp_path)
    assert s.source == "folder" and len(s) == 1 and len(s.details["skipped"]) == 1
    with pytest.raises(ValueError, match="none of the given photos"):
        synthetic.from_photos([tmp_path / "a.png"])
    with pytest.raises(ValueError, match="not a folder"):
        synthetic.from_folder(tmp_path / "missing")
    assert synthetic.empty().source == "none"
    with pytest.raises(ValueError, match="source"):
        synthetic.SyntheticSet((), "arc2face")


class _FixedDetector:
    """A detector that always finds one face at a fixed box (tests of the driver without MTCNN)."""

    def __init__(self, box):
        self.box = np.asarray([box], np.float32)

    def detect(self, image):
        if np.shape(image)[0] < 40:
            return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
        return Detections(self.box, np.ones(1, np.float32), np.zeros((1, 5, 2), np.float32))


def test_learn_apply_save_load(net, tmp_path):
    s, p = net
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (90, 100, 3)).astype(np.uint8)
    detector = _FixedDetector((20.5, 10.2, 80.7, 75.1))
    config = FaceCloakConfig(mode="corrected", epochs=1, crop_size=S)
    gallery = run.embed_gallery(s, p, _crops(70, 5))
    extra = synthetic.SyntheticSet((rng.integers(0, 256, (90, 100, 3)).astype(np.uint8),), "real", {})
    cloak = run.learn_cloak(photo, extra, s, p, detector, config, jax.random.key(0), gallery, seed=0)
    assert cloak.meta["images"] == 2 and len(cloak.meta["losses"]) == 2 and cloak.meta["anchors"]["far_rule"] == "farthest"
    assert np.abs(cloak.mask).max() <= config.eps + 1e-7
    path = run.save_cloak(tmp_path / "me.cloak.npz", cloak)
    with np.load(path, allow_pickle=False) as z:
        assert json.loads(str(z["config_json"]))["mode"] == "corrected"
    back = run.load_cloak(path)
    assert back.config == config and np.array_equal(back.stickers, cloak.stickers)
    tiny = rng.integers(0, 256, (30, 30, 3)).astype(np.uint8)
    out = run.apply_cloak(back, [photo, tiny, photo], detector)
    assert isinstance(out[1], Exception) and "no face" in str(out[1])
    assert out[0].image.shape == photo.shape and np.array_equal(out[0].image, out[2].image)
    assert 0 < np.abs(out[0].image.astype(int) - photo).max() <= 16 + 32 + 32 + 1
    resized = run.apply_cloak(back, [photo], detector, output="resized")[0]
    assert resized.image.shape == resized.resized.shape
    many = run.learn_cloaks([photo, photo], [extra, None], s, p, detector, config, [jax.random.key(0)] * 2, gallery)
    np.testing.assert_allclose(many[0].mask, cloak.mask, atol=1e-6)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable cloak file"):
        run.load_cloak(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        run.load_cloak(tmp_path / "other.npz")
    with pytest.raises(Exception, match="input photo"):
        run.save_cloak(tmp_path / "me.cloak.npz", cloak, inputs=[tmp_path / "me.cloak.npz"])
    with pytest.raises(Exception, match="no face"):
        run.learn_cloak(tiny, None, s, p, detector, config, jax.random.key(0), gallery)
    one, applied = run.cloak_photo(photo, s, p, detector, config, jax.random.key(0), augment=0, gallery=gallery)
    assert one.meta["images"] == 1 and applied.image.shape == photo.shape
    assert np.abs(applied.image.astype(int) - photo).max() > 0
