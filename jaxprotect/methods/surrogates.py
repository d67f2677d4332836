"""Face recognisers as attack surrogates: what an attack needs to know to call one.

A :class:`Surrogate` is the static (hashable) half of a recogniser; its params travel separately
so that jitted attack steps take them as arguments. :func:`embed` takes face crops on any pixel
scale and size, resizes them (bilinear, PyTorch-exact) to the recogniser's input size and maps
them to its input range before calling it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp

from jaxprotect.ops.resize import interpolate

__all__ = ["Surrogate", "from_network", "embed", "l2_normalize", "cosine"]


@dataclasses.dataclass(frozen=True)
class Surrogate:
    """``apply(params, images) -> [N, D]`` with images [N, H, W, 3] at ``input_size`` in ``input_range``."""

    name: str
    apply: Callable
    input_size: tuple[int, int]
    input_range: tuple[float, float] = (-1.0, 1.0)


def from_network(net) -> Surrogate:
    """The :class:`Surrogate` of a :class:`jaxprotect.network.Network` (use ``net.params`` as its params)."""
    return Surrogate(net.name, net.apply, tuple(net.input_size), tuple(net.input_range))


def embed(surrogate: Surrogate, params, images, scale: float = 255.0):
    """Embeddings [N, D] of ``images`` [N, H, W, 3] float32 in [0, ``scale``] (any H, W).

    Crops whose size differs from ``surrogate.input_size`` are resized bilinearly
    (``F.interpolate``, align_corners=False); values are then mapped linearly from [0, scale]
    onto the recogniser's ``input_range`` (e.g. [0, 255] -> [-1, 1] is ``x / 127.5 - 1``).
    """
    if tuple(images.shape[1:3]) != tuple(surrogate.input_size):
        images = interpolate(images, tuple(surrogate.input_size), mode="bilinear", align_corners=False)
    lo, hi = surrogate.input_range
    return surrogate.apply(params, lo + (hi - lo) * images / scale)


def l2_normalize(features, eps: float = 1e-5):
    """TIP-IM's ``FaceModel.forward`` normalisation: ``f / sqrt(sum(f**2) + eps)`` over the last axis."""
    return features / jnp.sqrt(jnp.sum(features**2, axis=-1, keepdims=True) + eps)


def cosine(a, b):
    """Cosine similarity along the last axis (broadcasting), with a 1e-12 floor on the norms."""
    na = jnp.maximum(jnp.linalg.norm(a, axis=-1), 1e-12)
    nb = jnp.maximum(jnp.linalg.norm(b, axis=-1), 1e-12)
    return jnp.sum(a * b, axis=-1) / (na * nb)
