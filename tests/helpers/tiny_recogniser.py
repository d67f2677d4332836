"""A tiny random conv recogniser for attack tests: same code path as the real ones, milliseconds per call."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxprotect.recognition import Recogniser
from jaxprotect.toy import TinyRecogniser


def tiny_surrogate(size: int = 32, seed: int = 0, dim: int = 32):
    """(Recogniser, params) of a randomly initialised :class:`TinyRecogniser` taking ``size`` x ``size``."""
    module = TinyRecogniser(dim)
    params = jax.jit(module.init)(jax.random.key(seed), jnp.zeros((1, size, size, 3)))["params"]

    def apply(p, images):
        return module.apply({"params": p}, images)

    return Recogniser(f"tiny{size}", apply, (size, size)), params
