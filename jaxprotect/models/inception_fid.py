"""The FID InceptionV3 of pytorch-fid (TensorFlow's 2015-12-05 Inception graph), in Flax linen.

Port of PyPI ``pytorch-fid`` 0.3.0 ``pytorch_fid/inception.py``: ``InceptionV3(output_blocks,
resize_input=True, normalize_input=True, use_fid_inception=True)``, i.e. ``fid_inception_v3()``
= torchvision 0.28 ``Inception3(num_classes=1008, aux_logits=False)`` with Mixed_5b-d replaced by
``FIDInceptionA``, Mixed_6b-e by ``FIDInceptionC``, Mixed_7b by ``FIDInceptionE_1`` and Mixed_7c by
``FIDInceptionE_2``. The FID blocks differ from torchvision's in their pool branch: a 3x3 average
pool that does not count the zero padding (``count_include_pad=False``, as TensorFlow), and a
3x3 max pool in Mixed_7c (the TF graph's quirk). Mixed_6a and Mixed_7a are torchvision's
``InceptionB``/``InceptionD`` unchanged. ``BasicConv2d`` = conv without bias, BatchNorm (eps 1e-3,
eval mode), ReLU.

Input handling, as ``InceptionV3.forward``: images in [0, 1] are resized to 299x299 with
``F.interpolate(mode='bilinear', align_corners=False)`` (no antialias) and mapped to [-1, 1] with
``2x - 1``. Outputs: block 0 (after maxpool1, 64 channels), 1 (after maxpool2, 192), 2 (Mixed_6e,
768), 3 (global average pool of Mixed_7c: the 2048-D "pool3" features FID uses).

Params are the ``Inception3`` state dict's names (``Mixed_5b.branch5x5_1.conv.weight`` OIHW,
``...bn.running_var``); the checkpoint is pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``,
whose ``fc.*`` (the 1008-class head) FID does not use and the converter drops after checking its shape.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from jaxprotect.checkpoints.state_dict import CheckpointKeyError, check_keys, load_state_dict, unflatten
from jaxprotect.nn.torch_layers import BatchNorm, Conv2d, max_pool, param_shapes
from jaxprotect.ops.resize import interpolate

__all__ = [
    "FIDInceptionV3",
    "InceptionFID",
    "convert_inception_fid",
    "load_inception_fid",
    "FID_WEIGHTS_NAME",
    "FID_WEIGHTS_URL",
    "BLOCK_CHANNELS",
]

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_NAME
BLOCK_CHANNELS = (64, 192, 768, 2048)
_FC_SHAPES = {"fc.weight": (1008, 2048), "fc.bias": (1008,)}


class BasicConv2d(nn.Module):
    """torchvision ``BasicConv2d``: ``conv`` (no bias) -> ``bn`` (eps 0.001) -> ReLU, NHWC."""

    cin: int
    cout: int
    kernel: Any
    stride: int = 1
    padding: Any = 0

    @nn.compact
    def __call__(self, x):
        x = Conv2d(self.cin, self.cout, self.kernel, self.stride, self.padding, use_bias=False, name="conv")(x)
        return jax.nn.relu(BatchNorm(self.cout, eps=1e-3, name="bn")(x))


def avg_pool_3x3_exclude_pad(x):
    """``F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)`` on NHWC."""
    window, strides, pads = (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    total = lax.reduce_window(x, 0.0, lax.add, window, strides, pads)
    count = lax.reduce_window(jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype), 0.0, lax.add, window, strides, pads)
    return total / count


class FIDInceptionA(nn.Module):
    """pytorch-fid ``FIDInceptionA`` (torchvision ``InceptionA`` with the padding-excluding average pool)."""

    cin: int
    pool_features: int

    @nn.compact
    def __call__(self, x):
        c = self.cin
        b1 = BasicConv2d(c, 64, 1, name="branch1x1")(x)
        b5 = BasicConv2d(c, 48, 1, name="branch5x5_1")(x)
        b5 = BasicConv2d(48, 64, 5, padding=2, name="branch5x5_2")(b5)
        b3 = BasicConv2d(c, 64, 1, name="branch3x3dbl_1")(x)
        b3 = BasicConv2d(64, 96, 3, padding=1, name="branch3x3dbl_2")(b3)
        b3 = BasicConv2d(96, 96, 3, padding=1, name="branch3x3dbl_3")(b3)
        bp = BasicConv2d(c, self.pool_features, 1, name="branch_pool")(avg_pool_3x3_exclude_pad(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """torchvision ``InceptionB`` (Mixed_6a): stride-2 reduction."""

    cin: int

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(self.cin, 384, 3, stride=2, name="branch3x3")(x)
        bd = BasicConv2d(self.cin, 64, 1, name="branch3x3dbl_1")(x)
        bd = BasicConv2d(64, 96, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = BasicConv2d(96, 96, 3, stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, max_pool(x, 3, 2)], axis=-1)


class FIDInceptionC(nn.Module):
    """pytorch-fid ``FIDInceptionC`` (factorised 7x7 convolutions, padding-excluding average pool)."""

    cin: int
    c7: int

    @nn.compact
    def __call__(self, x):
        c, c7 = self.cin, self.c7
        b1 = BasicConv2d(c, 192, 1, name="branch1x1")(x)
        b7 = BasicConv2d(c, c7, 1, name="branch7x7_1")(x)
        b7 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv2d(c, c7, 1, name="branch7x7dbl_1")(x)
        bd = BasicConv2d(c7, c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv2d(c7, c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv2d(c7, 192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv2d(c, 192, 1, name="branch_pool")(avg_pool_3x3_exclude_pad(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """torchvision ``InceptionD`` (Mixed_7a): stride-2 reduction."""

    cin: int

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(self.cin, 192, 1, name="branch3x3_1")(x)
        b3 = BasicConv2d(192, 320, 3, stride=2, name="branch3x3_2")(b3)
        b7 = BasicConv2d(self.cin, 192, 1, name="branch7x7x3_1")(x)
        b7 = BasicConv2d(192, 192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv2d(192, 192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv2d(192, 192, 3, stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, max_pool(x, 3, 2)], axis=-1)


class FIDInceptionE(nn.Module):
    """pytorch-fid ``FIDInceptionE_1`` (``pool="avg"``, padding excluded) / ``FIDInceptionE_2`` (``pool="max"``)."""

    cin: int
    pool: str

    @nn.compact
    def __call__(self, x):
        c = self.cin
        b1 = BasicConv2d(c, 320, 1, name="branch1x1")(x)
        b3 = BasicConv2d(c, 384, 1, name="branch3x3_1")(x)
        b3 = jnp.concatenate([
            BasicConv2d(384, 384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
            BasicConv2d(384, 384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
        ], axis=-1)
        bd = BasicConv2d(c, 448, 1, name="branch3x3dbl_1")(x)
        bd = BasicConv2d(448, 384, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([
            BasicConv2d(384, 384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
            BasicConv2d(384, 384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
        ], axis=-1)
        pooled = avg_pool_3x3_exclude_pad(x) if self.pool == "avg" else max_pool(x, 3, 1, padding=1)
        bp = BasicConv2d(c, 192, 1, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid ``InceptionV3`` with the FID Inception; see :meth:`__call__`."""

    @nn.compact
    def __call__(self, images, output_blocks: tuple[int, ...] = (3,), resize_input: bool = True,
                 normalize_input: bool = True):
        """``images`` [N, H, W, 3] float32 NHWC RGB in [0, 1] (``normalize_input=False``: already [-1, 1]).

        Returns a tuple with one array per requested block, in ascending block order: block 0
        [N, h, w, 64], 1 [N, h, w, 192], 2 [N, h, w, 768] (NHWC feature maps) and 3 [N, 2048] (pool3).
        """
        blocks = sorted(set(output_blocks))
        if not blocks or blocks[0] < 0 or blocks[-1] > 3:
            raise ValueError(f"output_blocks must be a non-empty subset of 0..3, not {output_blocks}")
        x = images
        if resize_input:
            x = interpolate(x, (299, 299), mode="bilinear", align_corners=False)
        if normalize_input:
            x = 2 * x - 1
        out = []
        x = BasicConv2d(3, 32, 3, stride=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv2d(32, 32, 3, name="Conv2d_2a_3x3")(x)
        x = BasicConv2d(32, 64, 3, padding=1, name="Conv2d_2b_3x3")(x)
        x = max_pool(x, 3, 2)
        if 0 in blocks:
            out.append(x)
        if blocks[-1] >= 1:
            x = BasicConv2d(64, 80, 1, name="Conv2d_3b_1x1")(x)
            x = BasicConv2d(80, 192, 3, name="Conv2d_4a_3x3")(x)
            x = max_pool(x, 3, 2)
            if 1 in blocks:
                out.append(x)
        if blocks[-1] >= 2:
            x = FIDInceptionA(192, 32, name="Mixed_5b")(x)
            x = FIDInceptionA(256, 64, name="Mixed_5c")(x)
            x = FIDInceptionA(288, 64, name="Mixed_5d")(x)
            x = InceptionB(288, name="Mixed_6a")(x)
            for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
                x = FIDInceptionC(768, c7, name=name)(x)
            if 2 in blocks:
                out.append(x)
        if blocks[-1] >= 3:
            x = InceptionD(768, name="Mixed_7a")(x)
            x = FIDInceptionE(1280, "avg", name="Mixed_7b")(x)
            x = FIDInceptionE(2048, "max", name="Mixed_7c")(x)
            out.append(jnp.mean(x, axis=(1, 2)))  # AdaptiveAvgPool2d((1, 1)), flattened
        return tuple(out)


@dataclasses.dataclass(eq=False)
class InceptionFID:
    """The loaded FID Inception: ``net(images)`` -> [N, 2048] pool3 features.

    ``images`` [N, H, W, 3] float32 NHWC RGB in [0, 1], any size (resized to 299 inside, as
    pytorch-fid does). ``apply(params, images, output_blocks=(3,))`` is the pure form and returns a
    tuple of the requested blocks. ``info`` says where the weights came from.
    """

    name: str
    module: FIDInceptionV3
    params: Any
    input_size: tuple[int, int] = (299, 299)
    input_range: tuple[float, float] = (0.0, 1.0)
    info: dict = dataclasses.field(default_factory=dict)

    def apply(self, params, images, output_blocks: tuple[int, ...] = (3,), resize_input: bool = True,
              normalize_input: bool = True):
        """Pure forward; see :meth:`FIDInceptionV3.__call__`. Returns a tuple of block outputs."""
        return self.module.apply({"params": params}, images, tuple(output_blocks), resize_input, normalize_input)

    @functools.cached_property
    def _pool3(self):
        return jax.jit(lambda params, images: self.apply(params, images)[0])

    def __call__(self, images):
        """pool3 features [N, 2048] of ``images`` [N, H, W, 3] in [0, 1] (jit-compiled)."""
        return self._pool3(self.params, images)


@functools.lru_cache(maxsize=None)
def _shapes() -> dict[str, tuple[int, ...]]:
    return param_shapes(FIDInceptionV3(), jnp.zeros((1, 299, 299, 3), jnp.float32))


def convert_inception_fid(checkpoint) -> dict:
    """Params tree from pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (path or mapping).

    The state dict of torchvision's ``Inception3(num_classes=1008, aux_logits=False)`` with the FID
    blocks; ``fc.weight``/``fc.bias`` (the classifier FID does not use) are checked for shape and
    dropped, ``num_batches_tracked`` ignored. Any other missing, unexpected or mis-shaped key raises
    :class:`CheckpointKeyError` naming it. A cache written from ``flatten(params)`` loads too.
    """
    flat = dict(load_state_dict(checkpoint))
    what = f"FID InceptionV3 checkpoint ({FID_WEIGHTS_NAME} layout)"
    for key, shape in _FC_SHAPES.items():
        if key in flat:
            value = flat.pop(key)
            if tuple(np.shape(value)) != shape:
                raise CheckpointKeyError(f"{what}: {key} has shape {tuple(np.shape(value))}, expected {shape}")
    return unflatten(check_keys(flat, _shapes(), what=what))


def load_inception_fid(checkpoint=None) -> InceptionFID:
    """Load the FID InceptionV3 (registry name ``inception_fid``) from pytorch-fid's weights.

    ``checkpoint``: ``pt_inception-2015-12-05-6726825d.pth`` (read without torch, without running
    pickled code), a ``.npz``/``.safetensors`` cache from ``jaxprotect convert inception_fid``, or a
    mapping. jaxprotect does not ship it and never downloads: ``None`` raises naming the file.
    Returns :class:`InceptionFID`.
    """
    if checkpoint is None:
        raise FileNotFoundError(
            f"the FID InceptionV3 needs pytorch-fid's {FID_WEIGHTS_NAME} ({FID_WEIGHTS_URL}; what "
            "pytorch_fid.inception.fid_inception_v3() downloads into ~/.cache/torch/hub/checkpoints/); "
            "jaxprotect does not ship it. Without it, `jaxprotect evaluate` reports a Frechet distance and KID "
            "on face-recogniser embeddings instead, which are not FID."
        )
    params = convert_inception_fid(checkpoint)
    source = os.fspath(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else "<mapping>"
    info = {"upstream": "pytorch-fid 0.3.0 pytorch_fid/inception.py InceptionV3(use_fid_inception=True)",
            "checkpoint": source}
    return InceptionFID(name="inception_fid", module=FIDInceptionV3(), params=params, info=info)
