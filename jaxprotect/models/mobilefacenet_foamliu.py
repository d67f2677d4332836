"""foamliu/MobileFaceNet (``mobilefacenet.py`` class ``MobileFaceNet()``) in linen, torch key layout.

A MobileNetV2-style face recogniser with a 128-D output, trained on refined MS-Celeb-1M
(Apache-2.0, converted weights shipped in ``ported_weights/mobilefacenet_foamliu.npz``):

``conv1`` ConvBNReLU(3->64, 3x3, s2) -> ``dw_conv`` DepthwiseSeparableConv(64->64, ReLU) ->
``features.0..14`` InvertedResidual (t,c,n,s = 2,64,5,2 / 4,128,1,2 / 2,128,6,1 / 4,128,1,2 /
2,128,2,1) -> ``conv2`` ConvBNReLU(128->512, 1x1) -> ``gdconv`` (7x7 depthwise, no padding) + BN ->
``conv3`` 1x1 conv 512->128 with bias -> ``bn`` BatchNorm2d(128) -> flatten. ConvBNReLU uses
ReLU6, DepthwiseSeparableConv plain ReLU; BN eps 1e-5; no L2 normalisation in the model.

Input convention: like every jaxprotect recogniser, ``net(images)`` takes RGB in [-1, 1]; the
module maps it to foamliu's ``ToTensor()`` + ImageNet ``Normalize`` inside ``apply``
(``((x + 1) / 2 - mean) / std``), so its numbers match the repository's evaluation
(``lfw_eval.py`` -> ``data_gen.py`` ``data_transforms['val']``) on RGB 112x112 aligned faces.
"""
from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxprotect.checkpoints.state_dict import load_state_dict
from jaxprotect.network import Network, device_params
from jaxprotect.nn.torch_layers import BatchNorm, Conv2d, l2_normalize, param_shapes, params_from_state_dict

__all__ = [
    "MobileFaceNetFoamliu",
    "load_mobilefacenet_foamliu",
    "foamliu_param_shapes",
    "foamliu_input",
    "flipsum_feature",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INPUT_SIZE",
]

INPUT_SIZE = (112, 112)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SHIPPED = "mobilefacenet_foamliu.npz"
# t (expansion), c (channels), n (repeats), s (first stride): mobilefacenet.py defaults
_SETTING = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


class ConvBNReLU(nn.Module):
    """``nn.Sequential(Conv2d(bias=False), BatchNorm2d, ReLU6)``: children "0", "1"."""

    cin: int
    cout: int
    kernel: int = 3
    stride: int = 1
    groups: int = 1

    @nn.compact
    def __call__(self, x):
        pad = (self.kernel - 1) // 2
        x = Conv2d(self.cin, self.cout, self.kernel, self.stride, pad, self.groups, use_bias=False, name="0")(x)
        return jnp.clip(BatchNorm(self.cout, name="1")(x), 0.0, 6.0)


class DepthwiseSeparableConv(nn.Module):
    """3x3 depthwise -> bn1 -> ReLU -> 1x1 pointwise -> bn2 -> ReLU (no biases)."""

    cin: int
    cout: int

    @nn.compact
    def __call__(self, x):
        x = Conv2d(self.cin, self.cin, 3, 1, 1, groups=self.cin, use_bias=False, name="depthwise")(x)
        x = nn.relu(BatchNorm(self.cin, name="bn1")(x))
        x = Conv2d(self.cin, self.cout, 1, use_bias=False, name="pointwise")(x)
        return nn.relu(BatchNorm(self.cout, name="bn2")(x))


class _Sequential(nn.Module):
    """The ``conv`` Sequential of an InvertedResidual: [pw ConvBNReLU], dw ConvBNReLU, 1x1 Conv, BN."""

    cin: int
    cout: int
    stride: int
    expand: int

    @nn.compact
    def __call__(self, x):
        hidden = int(round(self.cin * self.expand))
        i = 0
        if self.expand != 1:
            x = ConvBNReLU(self.cin, hidden, 1, name=str(i))(x)
            i += 1
        x = ConvBNReLU(hidden, hidden, 3, self.stride, groups=hidden, name=str(i))(x)
        x = Conv2d(hidden, self.cout, 1, use_bias=False, name=str(i + 1))(x)
        return BatchNorm(self.cout, name=str(i + 2))(x)


class InvertedResidual(nn.Module):
    cin: int
    cout: int
    stride: int
    expand: int

    @nn.compact
    def __call__(self, x):
        y = _Sequential(self.cin, self.cout, self.stride, self.expand, name="conv")(x)
        return x + y if self.stride == 1 and self.cin == self.cout else y


class _Features(nn.Module):
    @nn.compact
    def __call__(self, x):
        cin, i = 64, 0
        for t, c, n, s in _SETTING:
            for j in range(n):
                x = InvertedResidual(cin, c, s if j == 0 else 1, t, name=str(i))(x)
                cin, i = c, i + 1
        return x


class MobileFaceNetFoamliu(nn.Module):
    """foamliu MobileFaceNet (eval mode). ``__call__(x)``: [N, 112, 112, 3] -> [N, 128] (not normalised).

    With ``imagenet_input`` (default) ``x`` is RGB in [-1, 1] and is mapped to the ImageNet
    normalisation inside; with ``imagenet_input=False`` ``x`` must already be
    ``(rgb01 - IMAGENET_MEAN) / IMAGENET_STD`` (the tensor foamliu's code feeds the model).
    """

    imagenet_input: bool = True

    @nn.compact
    def __call__(self, x):
        if self.imagenet_input:
            mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
            std = jnp.asarray(IMAGENET_STD, jnp.float32)
            x = ((x + 1.0) * 0.5 - mean) / std
        x = ConvBNReLU(3, 64, 3, 2, name="conv1")(x)
        x = DepthwiseSeparableConv(64, 64, name="dw_conv")(x)
        x = _Features(name="features")(x)
        x = ConvBNReLU(128, 512, 1, name="conv2")(x)
        gd = _GDConv(name="gdconv")(x)
        x = Conv2d(512, 128, 1, name="conv3")(gd)
        x = BatchNorm(128, name="bn")(x)
        return x.reshape(x.shape[0], -1)  # [N, 1, 1, 128] -> [N, 128]


class _GDConv(nn.Module):
    @nn.compact
    def __call__(self, x):  # [N, 7, 7, 512] -> [N, 1, 1, 512]
        x = Conv2d(512, 512, 7, 1, 0, groups=512, use_bias=False, name="depthwise")(x)
        return BatchNorm(512, name="bn")(x)


_SHAPES: dict = {}


def foamliu_param_shapes() -> dict[str, tuple[int, ...]]:
    """``{state_dict key: shape}`` of the foamliu MobileFaceNet (``num_batches_tracked`` excluded)."""
    if not _SHAPES:
        _SHAPES.update(param_shapes(MobileFaceNetFoamliu(), jnp.zeros((1, *INPUT_SIZE, 3))))
    return dict(_SHAPES)


def load_mobilefacenet_foamliu(checkpoint=None) -> Network:
    """foamliu MobileFaceNet-128 as a :class:`Network`.

    ``checkpoint``: ``None`` = the converted weights shipped in ``ported_weights/`` (Apache-2.0),
    or the original ``weights/mobilefacenet.pt`` state dict (read without torch), a converted
    ``.npz``/``.safetensors``, or a mapping {state_dict key: array}.

    ``net(images)``: images [N, 112, 112, 3] float32 NHWC RGB in [-1, 1] (aligned faces; the
    ImageNet normalisation happens inside) -> embeddings [N, 128], NOT L2-normalised (cosine
    similarity normalises; the repository's LFW feature is :func:`flipsum_feature`).
    """
    if checkpoint is None:
        from ported_weights import shipped

        checkpoint = shipped(SHIPPED)
    source = "mapping" if isinstance(checkpoint, Mapping) else str(checkpoint)
    params = params_from_state_dict(load_state_dict(checkpoint), foamliu_param_shapes(),
                                    what=f"foamliu MobileFaceNet checkpoint {source}")
    params = device_params(params)  # device arrays: not re-copied on every call
    info = {
        "source": source,
        "input": "RGB [-1, 1], 112x112 aligned, NHWC; ImageNet mean/std applied inside apply",
        "output": "128-D, not normalised",
        "upstream": "foamliu/MobileFaceNet @ a6cc9032a659b615f477833e1a70b5e7931bcccc (Apache-2.0)",
    }
    return Network("mobilefacenet_foamliu", MobileFaceNetFoamliu(), params, INPUT_SIZE, (-1.0, 1.0), info)


def foamliu_input(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 RGB faces [N, 112, 112, 3] (already aligned) -> float32 [N, 112, 112, 3] in [-1, 1].

    ``u8 / 127.5 - 1``; with the normalisation inside the network this equals foamliu's
    ``ToTensor()`` + ``Normalize(IMAGENET_MEAN, IMAGENET_STD)`` to float32 rounding. foamliu's
    ``align_face`` gives BGR and its ``transform`` flips to RGB: pass RGB here.
    """
    return np.asarray(images_uint8, np.float32) / np.float32(127.5) - np.float32(1.0)


def flipsum_feature(apply_fn, params, images):
    """foamliu ``lfw_eval.get_feature``: ``l2(emb(x) + emb(hflip(x)))`` for images [N, H, W, 3] NHWC.

    ``apply_fn(params, images) -> [N, D]`` (e.g. ``net.apply``). Returns [N, D] unit vectors.
    """
    return l2_normalize(apply_fn(params, images) + apply_fn(params, images[:, :, ::-1, :]))
