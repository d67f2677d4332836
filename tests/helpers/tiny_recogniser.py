"""A tiny random conv recogniser for attack tests: same code path as the real ones, milliseconds per call."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxprotect.recognition import Recogniser


class TinyRecogniser(nn.Module):
    """Two strided convs and a dense layer: images [N, S, S, 3] in [-1, 1] -> [N, dim]."""

    dim: int = 32

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3), strides=2)(x))
        x = nn.relu(nn.Conv(16, (3, 3), strides=2)(x))
        return nn.Dense(self.dim)(x.reshape(x.shape[0], -1))


def tiny_surrogate(size: int = 32, seed: int = 0, dim: int = 32):
    """(Recogniser, params) of a randomly initialised :class:`TinyRecogniser` taking ``size`` x ``size``."""
    module = TinyRecogniser(dim)
    params = jax.jit(module.init)(jax.random.key(seed), jnp.zeros((1, size, size, 3)))["params"]

    def apply(p, images):
        return module.apply({"params": p}, images)

    return Recogniser(f"tiny{size}", apply, (size, size)), params
