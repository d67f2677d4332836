"""``interpolate`` reproduces torch.nn.functional.interpolate (no antialias)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprotect.ops.resize import interpolate

torch = pytest.importorskip("torch")
F = torch.nn.functional

CASES = [
    ((64, 64), (224, 224)),
    ((1024, 1024), (224, 224)),
    ((37, 53), (24, 24)),
    ((300, 200), (112, 112)),
    ((16, 16), (32, 32)),
]
MODES = [("nearest", None), ("bilinear", False), ("bilinear", True), ("bicubic", False), ("area", None)]


@pytest.mark.parametrize("in_hw,out_hw", CASES)
@pytest.mark.parametrize("mode,align_corners", MODES)
def test_matches_torch(in_hw, out_hw, mode, align_corners):
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, *in_hw)).astype(np.float32)
    kwargs = {} if align_corners is None else {"align_corners": align_corners}
    ref = F.interpolate(torch.from_numpy(x), size=out_hw, mode=mode, **kwargs).numpy()
    got = np.asarray(interpolate(x.transpose(0, 2, 3, 1), out_hw, mode, bool(align_corners)))
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), ref, atol=3e-6, rtol=0)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_gradient_matches_torch(mode):
    x = np.random.default_rng(1).uniform(0, 1, (1, 3, 40, 40)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal((1, 3, 17, 17)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    (F.interpolate(xt, size=(17, 17), mode=mode, **kwargs) * torch.from_numpy(w)).sum().backward()
    loss = lambda v: jnp.sum(interpolate(v, (17, 17), mode) * w.transpose(0, 2, 3, 1))  # noqa: E731
    got = jax.grad(loss)(x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(np.asarray(got).transpose(0, 3, 1, 2), xt.grad.numpy(), atol=1e-5)
