"""Face recognisers as every method calls them: one adapter for attacks, judges and reports.

A :class:`Recogniser` is the static (hashable) half of a loaded recogniser; its params travel
separately, so jitted steps take them as arguments. :func:`embed` takes face crops on any pixel
scale and size, resizes them (bilinear, PyTorch-exact) to the recogniser's input size and maps
them to its input range before calling it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp

from jaxprotect.ops.resize import interpolate

__all__ = ["Recogniser", "from_network", "recogniser_and_params", "embed", "l2_normalize", "cosine"]


@dataclasses.dataclass(frozen=True)
class Recogniser:
    """``apply(params, images) -> [N, D]``, images [N, H, W, 3] NHWC at ``input_size`` (H, W) in ``input_range``."""

    name: str
    apply: Callable
    input_size: tuple[int, int]
    input_range: tuple[float, float] = (-1.0, 1.0)

    @property
    def side(self) -> int:
        """The (square) input side, e.g. 112 or 160."""
        return int(self.input_size[0])


def from_network(net) -> Recogniser:
    """The :class:`Recogniser` of a :class:`jaxprotect.network.Network` (use ``net.params`` as its params).
    It holds the network's module, not its params: dropping ``net`` frees them."""
    return Recogniser(net.name, net.apply_fn, tuple(int(s) for s in net.input_size), tuple(net.input_range))


def recogniser_and_params(net):
    """(:func:`from_network` of ``net``, its params laid out for repeated jitted calls by
    :func:`jaxprotect.nn.torch_layers.compute_layout`): what attacks and judges run with."""
    from jaxprotect.nn.torch_layers import compute_layout

    return from_network(net), compute_layout(net.params)


def embed(recogniser: Recogniser, params, images, scale: float = 255.0):
    """Embeddings [N, D] of ``images`` [N, H, W, 3] float32 NHWC in [0, ``scale``] (any H, W).

    Crops whose size differs from ``recogniser.input_size`` are resized bilinearly
    (``F.interpolate``, align_corners=False); values are then mapped linearly from [0, scale]
    onto the recogniser's ``input_range`` (e.g. [0, 255] -> [-1, 1] is ``x / 127.5 - 1``).
    """
    if tuple(images.shape[1:3]) != tuple(recogniser.input_size):
        images = interpolate(images, tuple(recogniser.input_size), mode="bilinear", align_corners=False)
    lo, hi = recogniser.input_range
    return recogniser.apply(params, lo + (hi - lo) * images / scale)


def l2_normalize(features, eps: float = 1e-5):
    """TIP-IM's ``FaceModel.forward`` normalisation: ``f / sqrt(sum(f**2) + eps)`` over the last axis."""
    return features / jnp.sqrt(jnp.sum(features**2, axis=-1, keepdims=True) + eps)


def cosine(a, b, eps: float = 1e-8):
    """``torch.cosine_similarity(a, b, dim=-1)``: ``sum(a*b) / (max(|a|, eps) * max(|b|, eps))``, broadcasting [..., D]."""
    na = jnp.maximum(jnp.linalg.norm(a, axis=-1), eps)
    nb = jnp.maximum(jnp.linalg.norm(b, axis=-1), eps)
    return jnp.sum(a * b, axis=-1) / (na * nb)
