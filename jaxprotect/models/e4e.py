"""e4e encoder: ``Encoder4Editing(50, 'ir_se', opts)`` (omertov/encoder4editing ``models/encoders/psp_encoders.py``).

Images [N, 256, 256, 3] NHWC float32 in [-1, 1] -> W+ codes [N, n_styles, 512] for StyleGAN2, with
``n_styles = 2 * log2(stylegan_size) - 2`` (18 for the 1024 FFHQ generator). The trunk is the IR-SE-50
body of :mod:`jaxprotect.models.irse`; three taps (after body units 6, 20 and 23; 64x64, 32x32 and
16x16) feed ``n_styles`` GradualStyleBlocks through an FPN (``latlayer1``/``latlayer2`` with
bilinear, align_corners=True upsample-add). Every code after the first is ``w0 + delta_i``, and
``latent_avg`` is added on top as pSp does with ``start_from_latent_avg`` (``models/psp.py``).

Params are nested on the encoder's own state-dict keys (``input_layer.*``, ``body.N.*``,
``styles.I.convs.J.*``, ``styles.I.linear.*``, ``latlayer{1,2}.*``) plus ``latent_avg`` [n_styles, 512].
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxprotect.checkpoints.state_dict import CACHE_SUFFIXES, CheckpointKeyError, load_state_dict
from jaxprotect.checkpoints.torch_pickle import ScriptObject, read_torch_file
from jaxprotect.models.irse import Body, InputLayer
from jaxprotect.network import Network, device_params
from jaxprotect.nn.torch_layers import Conv2d, param_shapes, params_from_state_dict
from jaxprotect.ops.resize import interpolate

__all__ = ["EqualLinear", "GradualStyleBlock", "Encoder4Editing", "E4E", "n_styles_for", "load_e4e"]

INPUT_SIZE = 256
_COARSE, _MIDDLE = 3, 7  # styles [0, 3) read c3 (16x16), [3, 7) p2 (32x32), the rest p1 (64x64)
_TAPS = (6, 20, 23)  # body units whose outputs are c1, c2, c3

# Top-level entries of an e4e/pSp training checkpoint (training/coach.py __get_save_dict) that only matter
# for resuming training; inference ignores them.
_TRAINING_STATE = frozenset(
    {"global_step", "optimizer", "best_val_loss", "discriminator_state_dict", "discriminator_optimizer_state_dict"}
)


def n_styles_for(stylegan_size: int) -> int:
    """``style_count = 2 * log2(stylegan_size) - 2`` (18 for 1024, 16 for 512, 14 for 256)."""
    log_size = int(math.log2(stylegan_size))
    if 2**log_size != stylegan_size or log_size < 4:
        raise ValueError(f"stylegan_size must be a power of two >= 16, got {stylegan_size}")
    return 2 * log_size - 2


class EqualLinear(nn.Module):
    """StyleGAN2 ``EqualLinear`` without activation: ``x @ (weight * lr_mul / sqrt(in)).T + bias * lr_mul``.

    ``weight`` (out, in) and ``bias`` (out,) stay in checkpoint units; the scale is applied at run time.
    """

    in_dim: int
    out_dim: int
    lr_mul: float = 1.0

    @nn.compact
    def __call__(self, x):  # [N, in] -> [N, out]
        w = self.param("weight", nn.initializers.normal(1.0 / self.lr_mul), (self.out_dim, self.in_dim))
        b = self.param("bias", nn.initializers.zeros, (self.out_dim,))
        return x @ (w * (self.lr_mul / math.sqrt(self.in_dim))).T + b * self.lr_mul


class _StridedConvs(nn.Module):
    channels: int
    num_pools: int

    @nn.compact
    def __call__(self, x):
        for i in range(self.num_pools):  # Sequential of [Conv2d, LeakyReLU] pairs: convs sit at even indices
            x = Conv2d(self.channels, self.channels, 3, 2, 1, name=str(2 * i))(x)
            x = nn.leaky_relu(x, 0.01)  # torch nn.LeakyReLU() default slope
        return x


class GradualStyleBlock(nn.Module):
    """log2(spatial) x [Conv3x3 stride 2 (bias) -> LeakyReLU(0.01)] -> [N, 512] -> EqualLinear(512, 512)."""

    spatial: int
    channels: int = 512

    @nn.compact
    def __call__(self, x):  # [N, spatial, spatial, C] -> [N, C]
        x = _StridedConvs(self.channels, int(np.log2(self.spatial)), name="convs")(x)
        x = x.reshape(x.shape[0], self.channels)
        return EqualLinear(self.channels, self.channels, name="linear")(x)


class _StyleHeads(nn.Module):
    n_styles: int

    @nn.compact
    def __call__(self, c3, p2, p1):  # -> n_styles x [N, 512]
        out = []
        for i in range(self.n_styles):
            feature, spatial = (c3, 16) if i < _COARSE else (p2, 32) if i < _MIDDLE else (p1, 64)
            out.append(GradualStyleBlock(spatial, name=str(i))(feature))
        return out


def _upsample_add(x, y):
    """``F.interpolate(x, size=y.shape[-2:], mode='bilinear', align_corners=True) + y`` (upstream helpers.py)."""
    return interpolate(x, y.shape[1:3], mode="bilinear", align_corners=True) + y


class Encoder4Editing(nn.Module):
    """``Encoder4Editing(50, 'ir_se')`` at ``ProgressiveStage.Inference`` (all deltas), plus ``latent_avg``.

    ``__call__(x, add_latent_avg=True)``: ``x`` [N, 256, 256, 3] float32 NHWC in [-1, 1]; returns W+
    codes [N, n_styles, 512]. With ``add_latent_avg=False`` the encoder's raw output (no ``latent_avg``).
    """

    n_styles: int = 18

    @nn.compact
    def __call__(self, x, add_latent_avg: bool = True):
        if x.ndim != 4 or x.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"e4e expects images [N, {INPUT_SIZE}, {INPUT_SIZE}, 3] NHWC, got {x.shape}")
        x = InputLayer(name="input_layer")(x)
        _, taps = Body(50, se=True, name="body")(x, taps=_TAPS)
        c1, c2, c3 = (taps[i] for i in _TAPS)
        p2 = _upsample_add(c3, Conv2d(256, 512, 1, name="latlayer1")(c2))
        p1 = _upsample_add(p2, Conv2d(128, 512, 1, name="latlayer2")(c1))
        w0, *deltas = _StyleHeads(self.n_styles, name="styles")(c3, p2, p1)
        # w = w0 repeated over the styles, then w[:, i] += delta_i for i >= 1 (psp_encoders.py forward).
        codes = jnp.stack([w0] + [w0 + d for d in deltas], axis=1)
        latent_avg = self.param("latent_avg", nn.initializers.zeros, (self.n_styles, 512))
        return codes + latent_avg if add_latent_avg else codes


@functools.cache
def _compiled(module: Encoder4Editing):
    """One jitted ``(codes, raw codes)`` function per encoder configuration.

    XLA merges the two identical encoder passes, so asking for both costs one pass, and every
    :class:`E4E` built on an equal module (e.g. the same checkpoint loaded twice) reuses the compile.
    """
    return jax.jit(lambda params, images: (module.apply({"params": params}, images),
                                           module.apply({"params": params}, images, add_latent_avg=False)))


@dataclasses.dataclass(eq=False)
class E4E(Network):
    """The e4e encoder bound to its params.

    ``e(images)`` / ``e.apply(params, images)``: images [N, 256, 256, 3] NHWC float32 in [-1, 1] -> W+
    codes [N, n_styles, 512] with ``latent_avg`` added (what CLIP2Protect feeds the generator);
    ``e.raw_codes(images)`` / ``e.apply(params, images, add_latent_avg=False)`` give the encoder output
    alone. ``e.params["latent_avg"]`` is the average latent [n_styles, 512].
    """

    @property
    def n_styles(self) -> int:
        """Number of W+ rows (18 for a 1024 generator)."""
        return self.module.n_styles

    def __call__(self, images):
        """W+ codes [N, n_styles, 512] (``latent_avg`` added) for images [N, 256, 256, 3] in [-1, 1] (jitted)."""
        return _compiled(self.module)(self.params, images)[0]

    def raw_codes(self, images):
        """Encoder output [N, n_styles, 512] without ``latent_avg`` (jitted, stored params)."""
        return _compiled(self.module)(self.params, images)[1]


def _opts_dict(opts) -> dict:
    """``opts`` as a dict (e4e saves ``vars(opts)``; an ``argparse.Namespace`` or its inert stand-in also works)."""
    if opts is None:
        return {}
    if isinstance(opts, Mapping):
        return dict(opts)
    if isinstance(opts, ScriptObject):
        return {k: v for k, v in vars(opts).items() if k not in ("qualname", "args")}
    if hasattr(opts, "__dict__"):
        return dict(vars(opts))
    raise CheckpointKeyError(f"e4e checkpoint: 'opts' is a {type(opts).__name__}, expected a dict")


def _split_psp(state: Mapping[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    """Encoder keys of a pSp state dict with ``encoder.`` removed; ``decoder.*`` dropped; anything else fails."""
    encoder, other = {}, []
    for key, value in state.items():
        if key.startswith("encoder."):
            encoder[key[len("encoder."):]] = value
        elif key.startswith("decoder."):
            # decoder.* is the pSp wrapper's StyleGAN2 generator (load it with load_network("stylegan2", ...)
            # from stylegan2-ffhq-config-f.pt); e4e's encoder never reads it.
            continue
        else:
            other.append(key)
    if other:
        raise CheckpointKeyError(
            f"{what} does not match the network:\n  unexpected keys ({len(other)}) outside encoder./decoder.: "
            + ", ".join(sorted(other))
        )
    return encoder


def _read(checkpoint) -> tuple[dict[str, np.ndarray], dict]:
    """(flat encoder state dict, possibly with ``latent_avg``; opts) from any accepted checkpoint form."""
    what = "e4e checkpoint"
    if isinstance(checkpoint, Mapping):
        obj = checkpoint
    else:
        path = os.fspath(checkpoint)
        if not os.path.exists(path):
            raise FileNotFoundError(f"checkpoint not found: {path}")
        what = f"e4e checkpoint {path}"
        obj = load_state_dict(path) if path.endswith(CACHE_SUFFIXES) else read_torch_file(path)
    if not isinstance(obj, Mapping):
        raise CheckpointKeyError(f"{what}: expected a dict, got {type(obj).__name__}")
    if "state_dict" in obj:  # e4e_ffhq_encode.pt: {'state_dict', 'opts', 'latent_avg'} (training/coach.py)
        unknown = sorted(set(obj) - {"state_dict", "opts", "latent_avg"} - _TRAINING_STATE)
        if unknown:
            raise CheckpointKeyError(f"{what}: unexpected top-level entries: {', '.join(map(str, unknown))}")
        encoder = _split_psp(load_state_dict(obj["state_dict"]), what)
        if "latent_avg" in obj:
            encoder["latent_avg"] = load_state_dict({"latent_avg": obj["latent_avg"]})["latent_avg"]
        return encoder, _opts_dict(obj.get("opts"))
    flat = load_state_dict(obj)
    if any(k.startswith("encoder.") for k in flat):  # a flat pSp state dict, maybe with latent_avg beside it
        avg = {"latent_avg": flat.pop("latent_avg")} if "latent_avg" in flat else {}
        return {**_split_psp(flat, what), **avg}, {}
    return flat, {}


def _count_styles(keys) -> int | None:
    heads = {k.split(".")[1] for k in keys if k.startswith("styles.") and k.count(".") >= 2}
    return len(heads) or None


def load_e4e(checkpoint=None, *, stylegan_size: int | None = None) -> E4E:
    """Load the e4e encoder.

    ``checkpoint``: the original ``e4e_ffhq_encode.pt`` (top-level ``state_dict`` with ``encoder.*`` and
    ``decoder.*`` keys, ``latent_avg`` (n_styles, 512) or (512,), ``opts``); a mapping of the encoder's
    own keys plus ``latent_avg`` (or of that top-level layout); or the ``.npz``/``.safetensors`` that
    ``jaxprotect convert e4e`` wrote. ``decoder.*`` is ignored (it is the StyleGAN2 generator); any other
    unexpected, missing or mis-shaped key raises :class:`CheckpointKeyError` naming it.
    ``stylegan_size`` sets ``n_styles``; by default it comes from ``opts['stylegan_size']``, else from
    the number of style heads in the checkpoint. Returns an :class:`E4E`: images [N, 256, 256, 3] NHWC
    float32 in [-1, 1] -> W+ codes [N, n_styles, 512] with ``latent_avg`` added.
    """
    if checkpoint is None:
        raise ValueError(
            "e4e: no weights ship with jaxprotect. Pass the original e4e_ffhq_encode.pt from omertov/encoder4editing "
            "(README, 'Pretrained Models': Google Drive id 1cUv_reLE6k3604or78EranS7XzuVMWeO)"
        )
    state, opts = _read(checkpoint)
    size = opts.get("stylegan_size")
    if stylegan_size is not None:
        if size is not None and int(size) != stylegan_size:
            raise ValueError(f"stylegan_size={stylegan_size} but the checkpoint's opts say {size}")
        size = stylegan_size
    if size is not None:
        n_styles = n_styles_for(int(size))
    else:
        n_styles = _count_styles(state) or n_styles_for(1024)
    avg = state.get("latent_avg")
    if avg is not None and np.shape(avg) in ((512,), (1, 512), (1, 1, 512), (1, n_styles, 512)):
        # pSp adds latent_avg.repeat(B, 1, 1): a single (512,) row broadcasts over all styles.
        state = {**state, "latent_avg": np.broadcast_to(np.asarray(avg).reshape(-1, 512), (n_styles, 512)).copy()}
    module = Encoder4Editing(n_styles)
    shapes = param_shapes(module, jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32))
    params = params_from_state_dict(state, shapes, what="e4e checkpoint")
    info = {
        "upstream": "omertov/encoder4editing models/encoders/psp_encoders.py Encoder4Editing(50, 'ir_se')",
        "stylegan_size": 2 ** ((n_styles + 2) // 2),
        "opts": {k: v for k, v in opts.items() if isinstance(v, (str, int, float, bool, type(None)))},
    }
    return E4E("e4e", module, device_params(params), (INPUT_SIZE, INPUT_SIZE), (-1.0, 1.0), info)
