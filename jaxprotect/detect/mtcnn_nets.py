"""MTCNN's three networks (P-Net, R-Net, O-Net) as linen modules in facenet-pytorch's key layout.

Params mirror the ``state_dict`` of facenet-pytorch 2.6.0 ``models/mtcnn.py`` (``conv1.weight``
OIHW, ``dense4.weight`` (out, in), ``prelu1.weight`` ...), so the converted ``pnet.pt`` /
``rnet.pt`` / ``onet.pt`` drop in unchanged. Inputs are NHWC float32 images already normalised
as the cascade does it, ``(pixel - 127.5) * 0.0078125`` (about [-1, 1]).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxprotect.nn.torch_layers import Conv2d, Linear, PReLU, max_pool

__all__ = ["PNet", "RNet", "ONet", "whcn_flatten"]


def whcn_flatten(x):
    """Flatten NHWC features as R-Net/O-Net do: ``x.permute(0, 3, 2, 1).view(N, -1)`` on NCHW,
    i.e. in (W, H, C) order ([N, H, W, C] -> [N, W*H*C])."""
    return jnp.transpose(x, (0, 2, 1, 3)).reshape(x.shape[0], -1)


class PNet(nn.Module):
    """Proposal net, fully convolutional.

    ``__call__(x, mask=None)``: ``x`` [N, H, W, 3] normalised images ->
    ``(reg [N, H', W', 4], prob [N, H', W', 2])`` with ``H' = ceil((H - 4) / 2) - 3`` (conv 3x3,
    max-pool 2/2 in ceil mode, conv 3x3, conv 3x3, as PyTorch sizes them); ``prob`` is the softmax
    over the two classes (index 1 = face).

    ``mask`` [N, H, W] (1 = image pixel, 0 = padding) lets one call run several images packed
    into a canvas: a first-layer output whose 3x3 window touches padding is replaced by -inf
    before the pooling, exactly as PyTorch's ceil-mode pooling treats the outside of an image.
    An image placed at even coordinates with at least 2 padding pixels after it then gets, in
    its own region of the output, the outputs it would get alone (the cascade packs its
    pyramid levels this way and compiles one program per canvas size, not one per level).
    """

    @nn.compact
    def __call__(self, x, mask=None):
        x = PReLU(10, name="prelu1")(Conv2d(3, 10, 3, name="conv1")(x))
        if mask is not None:
            inside = lax.reduce_window(mask, jnp.inf, lax.min, (1, 3, 3), (1, 1, 1), "VALID")
            x = jnp.where(inside[..., None] > 0, x, -jnp.inf)
        x = max_pool(x, 2, 2, ceil_mode=True)
        if mask is not None:
            x = jnp.where(jnp.isfinite(x), x, 0.0)  # windows wholly in the padding: keep them finite
        x = PReLU(16, name="prelu2")(Conv2d(10, 16, 3, name="conv2")(x))
        x = PReLU(32, name="prelu3")(Conv2d(16, 32, 3, name="conv3")(x))
        prob = jax.nn.softmax(Conv2d(32, 2, 1, name="conv4_1")(x), axis=-1)
        reg = Conv2d(32, 4, 1, name="conv4_2")(x)
        return reg, prob


class RNet(nn.Module):
    """Refine net: ``x`` [N, 24, 24, 3] -> ``(reg [N, 4], prob [N, 2])``."""

    @nn.compact
    def __call__(self, x):
        x = PReLU(28, name="prelu1")(Conv2d(3, 28, 3, name="conv1")(x))
        x = max_pool(x, 3, 2, ceil_mode=True)
        x = PReLU(48, name="prelu2")(Conv2d(28, 48, 3, name="conv2")(x))
        x = max_pool(x, 3, 2, ceil_mode=True)
        x = PReLU(64, name="prelu3")(Conv2d(48, 64, 2, name="conv3")(x))
        x = PReLU(128, name="prelu4")(Linear(576, 128, name="dense4")(whcn_flatten(x)))
        prob = jax.nn.softmax(Linear(128, 2, name="dense5_1")(x), axis=-1)
        reg = Linear(128, 4, name="dense5_2")(x)
        return reg, prob


class ONet(nn.Module):
    """Output net: ``x`` [N, 48, 48, 3] -> ``(reg [N, 4], landmarks [N, 10], prob [N, 2])``.

    ``landmarks`` are 5 x's then 5 y's, relative to the input box (0..1 across it).
    """

    @nn.compact
    def __call__(self, x):
        x = PReLU(32, name="prelu1")(Conv2d(3, 32, 3, name="conv1")(x))
        x = max_pool(x, 3, 2, ceil_mode=True)
        x = PReLU(64, name="prelu2")(Conv2d(32, 64, 3, name="conv2")(x))
        x = max_pool(x, 3, 2, ceil_mode=True)
        x = PReLU(64, name="prelu3")(Conv2d(64, 64, 3, name="conv3")(x))
        x = max_pool(x, 2, 2, ceil_mode=True)
        x = PReLU(128, name="prelu4")(Conv2d(64, 128, 2, name="conv4")(x))
        x = PReLU(256, name="prelu5")(Linear(1152, 256, name="dense5")(whcn_flatten(x)))
        prob = jax.nn.softmax(Linear(256, 2, name="dense6_1")(x), axis=-1)
        reg = Linear(256, 4, name="dense6_2")(x)
        landmarks = Linear(256, 10, name="dense6_3")(x)
        return reg, landmarks, prob
