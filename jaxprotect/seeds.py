"""Where a photo's randomness comes from: its content and the run's seed, nothing else.

``photo_key(seed, photo)`` folds a 31-bit digest of the decoded pixels (and their shape) into
``jax.random.key(seed)``. The same photo gets the same key in any batch, in any order, under any
file name, on any number of processes; two different photos get different keys.
"""
from __future__ import annotations

import hashlib

import jax
import numpy as np

__all__ = ["content_id", "photo_key"]


def content_id(photo) -> int:
    """A 31-bit integer digest (sha256) of a decoded photo's pixels and shape."""
    a = np.ascontiguousarray(np.asarray(photo))
    h = hashlib.sha256(f"{a.shape}{a.dtype}".encode())
    h.update(a.tobytes())
    return int.from_bytes(h.digest()[:4], "big") & 0x7FFFFFFF


def photo_key(seed: int, photo) -> jax.Array:
    """The PRNG key of ``photo`` (uint8 [H, W, 3]) in a run seeded with ``seed``."""
    return jax.random.fold_in(jax.random.key(int(seed)), content_id(photo))
