"""MobileFaceNet-512 = ``irse.MobileFaceNet(512)`` (CLIP2Protect/AMT-GAN ``models/irse.py``).

Params are nested on the original state-dict keys (``conv1.conv.weight``, ``conv_3.model.0.conv_dw.bn.*``,
``linear.weight``, ``bn.*``, ...). Images are NHWC float32 in [-1, 1] at 112x112 (112 -> 56 -> 28 -> 14
-> 7 -> 1); the output is the L2-normalised BatchNorm1d embedding.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxprotect.checkpoints.state_dict import load_state_dict
from jaxprotect.face_conventions import AMT_GAN_THRESHOLDS
from jaxprotect.network import Network, device_params
from jaxprotect.nn.torch_layers import (
    BatchNorm,
    Conv2d,
    Linear,
    PReLU,
    l2_normalize,
    nchw_flatten,
    param_shapes,
    params_from_state_dict,
)

__all__ = ["ConvBlock", "DepthWise", "Residual", "MobileFaceNet", "load_mobileface"]


class ConvBlock(nn.Module):
    """``Conv_block`` (conv without bias -> BN -> PReLU) or, with ``linear=True``, ``Linear_block`` (no PReLU)."""

    in_c: int
    out_c: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    groups: int = 1
    linear: bool = False

    @nn.compact
    def __call__(self, x):  # [N, H, W, in_c] -> [N, H', W', out_c]
        x = Conv2d(self.in_c, self.out_c, self.kernel, self.stride, self.padding, self.groups, False, name="conv")(x)
        x = BatchNorm(self.out_c, name="bn")(x)
        return x if self.linear else PReLU(self.out_c, name="prelu")(x)


class DepthWise(nn.Module):
    """``Depth_Wise``: 1x1 expand to ``groups`` -> 3x3 depthwise (``stride``) -> 1x1 linear project (+ skip)."""

    in_c: int
    out_c: int
    stride: int
    groups: int
    residual: bool = False

    @nn.compact
    def __call__(self, x):
        y = ConvBlock(self.in_c, self.groups, name="conv")(x)
        y = ConvBlock(self.groups, self.groups, 3, self.stride, 1, groups=self.groups, name="conv_dw")(y)
        y = ConvBlock(self.groups, self.out_c, linear=True, name="project")(y)
        return x + y if self.residual else y


class _Blocks(nn.Module):
    c: int
    num_block: int
    groups: int

    @nn.compact
    def __call__(self, x):
        for i in range(self.num_block):
            x = DepthWise(self.c, self.c, 1, self.groups, residual=True, name=str(i))(x)
        return x


class Residual(nn.Module):
    """``Residual``: ``num_block`` residual :class:`DepthWise` units under ``model.0..``."""

    c: int
    num_block: int
    groups: int

    @nn.compact
    def __call__(self, x):
        return _Blocks(self.c, self.num_block, self.groups, name="model")(x)


class MobileFaceNet(nn.Module):
    """``MobileFaceNet(embedding_size)``.

    ``__call__(x, normalize=None)``: ``x`` [N, 112, 112, 3] float32 NHWC in [-1, 1]; returns
    [N, embedding_size], L2-normalised when ``normalize`` (default: the ``normalize`` field), else
    the final BatchNorm1d output.
    """

    embedding_size: int = 512
    normalize: bool = True

    @nn.compact
    def __call__(self, x, normalize: bool | None = None):
        if x.ndim != 4 or x.shape[1:] != (112, 112, 3):
            raise ValueError(f"expected images [N, 112, 112, 3] NHWC, got {x.shape}")
        x = ConvBlock(3, 64, 3, 2, 1, name="conv1")(x)
        x = ConvBlock(64, 64, 3, 1, 1, groups=64, name="conv2_dw")(x)
        x = DepthWise(64, 64, 2, 128, name="conv_23")(x)
        x = Residual(64, 4, 128, name="conv_3")(x)
        x = DepthWise(64, 128, 2, 256, name="conv_34")(x)
        x = Residual(128, 6, 256, name="conv_4")(x)
        x = DepthWise(128, 128, 2, 512, name="conv_45")(x)
        x = Residual(128, 2, 256, name="conv_5")(x)
        x = ConvBlock(128, 512, name="conv_6_sep")(x)
        x = ConvBlock(512, 512, 7, groups=512, linear=True, name="conv_6_dw")(x)
        x = nchw_flatten(x)
        x = Linear(512, self.embedding_size, use_bias=False, name="linear")(x)
        x = BatchNorm(self.embedding_size, name="bn")(x)
        use_l2 = self.normalize if normalize is None else normalize
        return l2_normalize(x) if use_l2 else x


def load_mobileface(checkpoint=None) -> Network:
    """MobileFace = ``irse.MobileFaceNet(512)`` from ``mobile_face.pth`` (path, converted cache or mapping).

    The returned network maps images [N, 112, 112, 3] NHWC float32 in [-1, 1] to L2-normalised
    embeddings [N, 512]; ``net.apply(params, images, normalize=False)`` gives the BatchNorm1d output.
    """
    if checkpoint is None:
        raise ValueError(
            "mobileface: no weights ship with jaxprotect (the licence of the AMT-GAN/Adv-Makeup checkpoints does not "
            "allow it). Pass the original mobile_face.pth: AMT-GAN assets.zip (Google Drive "
            "1Vuek5-YTZlYGoeoqyM5DlvnaXMeii4O8, see CGCL-codes/AMT-GAN README), file assets/models/mobile_face.pth; "
            "CLIP2Protect expects it as models/mobile_face.pth"
        )
    module = MobileFaceNet(512, normalize=True)
    shapes = param_shapes(module, jnp.zeros((1, 112, 112, 3), jnp.float32))
    params = params_from_state_dict(load_state_dict(checkpoint), shapes, what="mobileface checkpoint")
    return Network(
        "mobileface",
        module,
        device_params(params),
        (112, 112),
        (-1.0, 1.0),
        {
            "upstream": "fahadshamshad/Clip2Protect models/irse.py MobileFaceNet(512)",
            "thresholds": AMT_GAN_THRESHOLDS["mobileface"],
        },
    )
