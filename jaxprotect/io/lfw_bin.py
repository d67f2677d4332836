"""insightface's LFW ``.bin`` verification files (pickle of (list of JPEG buffers, issame list)), read safely.

The file is a pickle, so it is read with an unpickler whose class lookup allows only the builtins
``list``/``tuple``/``bytes``/``bool`` and numpy's array reconstruction (the JPEG buffers are stored
as 1-D uint8 arrays), with the dtype restricted to uint8/bool. Any other global raises
:class:`pickle.UnpicklingError`; nothing in the file can run code.
"""
from __future__ import annotations

import io
import os
import pickle

import numpy as np
from numpy._core import multiarray as _multiarray

__all__ = ["load_lfw_bin", "decode_jpegs"]

_SAFE_DTYPES = {"u1", "b1", "|u1", "|b1", "uint8", "bool"}


def _dtype(code, align=False, copy=False):
    if str(code) not in _SAFE_DTYPES:
        raise pickle.UnpicklingError(f"dtype {code!r} is not allowed in an LFW .bin (only uint8/bool)")
    return np.dtype(code, align, copy)


_ALLOWED = {
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "bytes"): bytes,
    ("builtins", "bool"): bool,
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in an LFW .bin file") from None


def load_lfw_bin(path: str | os.PathLike) -> tuple[list[bytes], np.ndarray]:
    """``(jpeg_buffers, issame)`` from an insightface LFW ``.bin``: N encoded images and N/2 booleans.

    Pairs are images (0, 1), (2, 3), ...; ``issame[i]`` says whether pair i is one person.
    """
    with open(os.fspath(path), "rb") as f:
        obj = _RestrictedUnpickler(f, encoding="bytes").load()
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise ValueError(f"{path}: expected a (images, issame) pair")
    images, issame = obj
    buffers = [bytes(np.asarray(b, np.uint8).tobytes()) if not isinstance(b, bytes) else b for b in images]
    issame = np.asarray(issame, bool)
    if len(buffers) != 2 * len(issame):
        raise ValueError(f"{path}: {len(buffers)} images for {len(issame)} pairs")
    return buffers, issame


def decode_jpegs(buffers: list[bytes]) -> np.ndarray:
    """Decode JPEG buffers with Pillow into uint8 RGB [N, H, W, 3] (all images must share one size)."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in buffers])
