"""IR / IR-SE ResNets (the ArcFace backbones) in the TreB1eN / face.evoLVe layout.

One family, three checkpoints users have:

* IRSE50 = ``irse.Backbone(50, 0.6, 'ir_se')`` (CLIP2Protect/AMT-GAN ``models/irse.py``), L2-normalised;
* IR152 = ``ir152.IR_152((112, 112))`` (CLIP2Protect/AMT-GAN ``models/ir152.py``), raw BatchNorm1d output;
* IR50 = face.evoLVe ``IR_50((112, 112))`` (FaceCloak ``src/advcloak/model_irse.py``; its ArcFace, CosFace
  and Softmax victims), raw BatchNorm1d output.

All three share the state-dict layout ``input_layer.{0,1,2}``, ``body.N.{shortcut_layer,res_layer}``,
``output_layer.{0,3,4}``, and params here are nested on exactly those keys. Images are NHWC float32 in
[-1, 1] at 112x112. The IR-SE-50 body (:class:`InputLayer` + :class:`Body`) is also e4e's encoder trunk.
"""
from __future__ import annotations

import flax.linen as nn
import jax
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

__all__ = [
    "UNITS",
    "unit_specs",
    "InputLayer",
    "Bottleneck",
    "Body",
    "OutputLayer",
    "Backbone",
    "load_irse50",
    "load_ir152",
    "load_ir50",
]

# Units per stage (get_blocks in upstream irse.py / ir152.py / helpers.py); stage depths 64/128/256/512.
UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
_DEPTHS = (64, 128, 256, 512)


_AMT_GAN_SOURCE = (
    "AMT-GAN assets.zip (Google Drive 1Vuek5-YTZlYGoeoqyM5DlvnaXMeii4O8, see CGCL-codes/AMT-GAN README), "
    "file assets/models/{file}; CLIP2Protect expects it as models/{file}"
)


def unit_specs(num_layers: int) -> list[tuple[int, int, int]]:
    """``(in_channel, depth, stride)`` of every body unit: the first unit of each stage has stride 2."""
    try:
        units = UNITS[num_layers]
    except KeyError:
        raise ValueError(f"num_layers must be one of {sorted(UNITS)}, got {num_layers}") from None
    specs, in_c = [], 64
    for n, depth in zip(units, _DEPTHS):
        specs.append((in_c, depth, 2))
        specs += [(depth, depth, 1)] * (n - 1)
        in_c = depth
    return specs


class InputLayer(nn.Module):
    """``Conv3x3(3->64, no bias) -> BN -> PReLU`` (keys ``0.weight``, ``1.*``, ``2.weight``)."""

    @nn.compact
    def __call__(self, x):  # [N, H, W, 3] -> [N, H, W, 64]
        x = Conv2d(3, 64, 3, 1, 1, use_bias=False, name="0")(x)
        x = BatchNorm(64, name="1")(x)
        return PReLU(64, name="2")(x)


class _ConvShortcut(nn.Module):
    in_channel: int
    depth: int
    stride: int

    @nn.compact
    def __call__(self, x):
        x = Conv2d(self.in_channel, self.depth, 1, self.stride, 0, use_bias=False, name="0")(x)
        return BatchNorm(self.depth, name="1")(x)


class SEModule(nn.Module):
    """Squeeze-excitation gate: mean over H, W -> 1x1 conv ``fc1`` -> ReLU -> 1x1 conv ``fc2`` -> sigmoid."""

    channels: int
    reduction: int = 16

    @nn.compact
    def __call__(self, x):  # [N, H, W, C] -> [N, H, W, C]
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = Conv2d(self.channels, self.channels // self.reduction, 1, use_bias=False, name="fc1")(s)
        s = nn.relu(s)
        s = Conv2d(self.channels // self.reduction, self.channels, 1, use_bias=False, name="fc2")(s)
        return x * jax.nn.sigmoid(s)


class _ResLayer(nn.Module):
    in_channel: int
    depth: int
    stride: int
    se: bool

    @nn.compact
    def __call__(self, x):
        x = BatchNorm(self.in_channel, name="0")(x)
        x = Conv2d(self.in_channel, self.depth, 3, 1, 1, use_bias=False, name="1")(x)
        x = PReLU(self.depth, name="2")(x)
        x = Conv2d(self.depth, self.depth, 3, self.stride, 1, use_bias=False, name="3")(x)
        x = BatchNorm(self.depth, name="4")(x)
        if self.se:
            x = SEModule(self.depth, 16, name="5")(x)
        return x


class Bottleneck(nn.Module):
    """``bottleneck_IR`` (``se=False``) / ``bottleneck_IR_SE`` (``se=True``): residual + shortcut, no activation."""

    in_channel: int
    depth: int
    stride: int
    se: bool

    @nn.compact
    def __call__(self, x):  # [N, H, W, in] -> [N, ceil(H/stride), ceil(W/stride), depth]
        if self.in_channel == self.depth:
            # MaxPool2d(1, stride) in the upstream unit: a 1x1 window only subsamples.
            shortcut = x[:, :: self.stride, :: self.stride, :]
        else:
            shortcut = _ConvShortcut(self.in_channel, self.depth, self.stride, name="shortcut_layer")(x)
        res = _ResLayer(self.in_channel, self.depth, self.stride, self.se, name="res_layer")(x)
        return res + shortcut


class Body(nn.Module):
    """The ``body`` Sequential: units ``0..N-1`` (:func:`unit_specs`); optionally returns tapped unit outputs."""

    num_layers: int = 50
    se: bool = True

    @nn.compact
    def __call__(self, x, taps: tuple[int, ...] = ()):  # [N, H, W, 64] -> ([N, H/16, W/16, 512], {i: map})
        tapped = {}
        for i, (in_c, depth, stride) in enumerate(unit_specs(self.num_layers)):
            x = Bottleneck(in_c, depth, stride, self.se, name=str(i))(x)
            if i in taps:
                tapped[i] = x
        return x, tapped


class OutputLayer(nn.Module):
    """``BN2d(512) -> Dropout (eval: identity) -> Flatten (NCHW order) -> Linear(512*s*s, 512) -> BN1d(512)``."""

    spatial: int = 7

    @nn.compact
    def __call__(self, x):  # [N, s, s, 512] -> [N, 512]
        x = BatchNorm(512, name="0")(x)
        x = nchw_flatten(x)
        x = Linear(512 * self.spatial * self.spatial, 512, name="3")(x)
        return BatchNorm(512, name="4")(x)


class Backbone(nn.Module):
    """IR / IR-SE backbone with its embedding head.

    ``__call__(x, normalize=None)``: ``x`` [N, S, S, 3] float32 NHWC in [-1, 1] with S = ``input_size``;
    returns [N, 512], L2-normalised when ``normalize`` (default: the module's ``normalize`` field),
    else the raw BatchNorm1d output (the "prenorm" embedding).
    """

    num_layers: int = 50
    se: bool = True
    input_size: int = 112
    normalize: bool = True

    @nn.compact
    def __call__(self, x, normalize: bool | None = None):
        if x.ndim != 4 or x.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected images [N, {self.input_size}, {self.input_size}, 3] NHWC, got {x.shape}")
        x = InputLayer(name="input_layer")(x)
        x, _ = Body(self.num_layers, self.se, name="body")(x)
        x = OutputLayer(self.input_size // 16, name="output_layer")(x)
        use_l2 = self.normalize if normalize is None else normalize
        return l2_normalize(x) if use_l2 else x


def _load(checkpoint, *, name: str, module: Backbone, file: str, info: dict) -> Network:
    if checkpoint is None:
        raise ValueError(
            f"{name}: no weights ship with jaxprotect (the licence of the AMT-GAN/Adv-Makeup checkpoints does not "
            f"allow it). Pass the original {file}: {_AMT_GAN_SOURCE.format(file=file)}"
        )
    s = module.input_size
    shapes = param_shapes(module, jnp.zeros((1, s, s, 3), jnp.float32))
    params = params_from_state_dict(load_state_dict(checkpoint), shapes, what=f"{name} checkpoint")
    return Network(name, module, device_params(params), (s, s), (-1.0, 1.0), info)


def load_irse50(checkpoint=None) -> Network:
    """IRSE50 = ``irse.Backbone(50, 0.6, 'ir_se')`` from ``irse50.pth`` (path, converted cache or mapping).

    The returned network maps images [N, 112, 112, 3] NHWC float32 in [-1, 1] to L2-normalised
    embeddings [N, 512]; ``net.apply(params, images, normalize=False)`` gives the pre-normalisation
    embedding (the BatchNorm1d output).
    """
    return _load(
        checkpoint,
        name="irse50",
        module=Backbone(50, se=True, normalize=True),
        file="irse50.pth",
        info={
            "upstream": "fahadshamshad/Clip2Protect models/irse.py Backbone(50, 0.6, 'ir_se')",
            "thresholds": AMT_GAN_THRESHOLDS["irse50"],
        },
    )


def load_ir152(checkpoint=None) -> Network:
    """IR152 = ``ir152.IR_152((112, 112))`` from ``ir152.pth`` (path, converted cache or mapping).

    The returned network maps images [N, 112, 112, 3] NHWC float32 in [-1, 1] to the raw (not
    normalised) BatchNorm1d embedding [N, 512], as upstream; ``normalize=True`` in ``apply`` adds an
    L2 norm.
    """
    return _load(
        checkpoint,
        name="ir152",
        module=Backbone(152, se=False, normalize=False),
        file="ir152.pth",
        info={
            "upstream": "fahadshamshad/Clip2Protect models/ir152.py IR_152((112, 112))",
            "thresholds": AMT_GAN_THRESHOLDS["ir152"],
        },
    )


def load_ir50(checkpoint=None) -> Network:
    """IR-50 = face.evoLVe ``IR_50((112, 112))`` as FaceCloak's ArcFace/CosFace/Softmax victims use it.

    ``checkpoint``: FaceCloak's ``model_checkpoints/{arcface,cosface,softmax}.pth`` (path, converted
    cache or mapping); there is no default. Images [N, 112, 112, 3] NHWC float32 in [-1, 1] ->
    raw BatchNorm1d embedding [N, 512] (no L2 norm, as upstream).
    """
    if checkpoint is None:
        raise ValueError(
            "ir50: no weights ship with jaxprotect. Pass FaceCloak's model_checkpoints/arcface.pth, cosface.pth or "
            "softmax.pth (face.evoLVe IR_50 state dicts; see zacharyyahn/FaceCloak README for where to get them)"
        )
    return _load(
        checkpoint,
        name="ir50",
        module=Backbone(50, se=False, normalize=False),
        file="arcface.pth",
        info={"upstream": "zacharyyahn/FaceCloak src/advcloak/model_irse.py IR_50((112, 112))"},
    )
