"""StyleGAN2 generator (rosinality layout, as vendored by CLIP2Protect) with pure-function synthesis.

Upstream: fahadshamshad/Clip2Protect ``models/stylegan2/model.py`` ``Generator`` (StyleCLIP's copy
of rosinality/stylegan2-pytorch). Params are the ``g_ema`` state dict nested on its dots, in
checkpoint units and layout (``style.1.weight`` (512, 512), ``convs.0.conv.weight``
(1, O, I, 3, 3), ...): the equalised-learning-rate scales are applied when the network runs.
The FIR ``.kernel`` buffers are not params (they are recomputed and checked on load); the
``noises.noise_i`` buffers are kept apart from the params (:attr:`StyleGAN2.noise`), so an
optimiser over ``params`` never touches them and one over the noise never touches the weights.

Images come out NHWC float32, raw and unclamped (about [-1, 1] for a trained generator).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprotect.checkpoints.state_dict import CheckpointKeyError, check_keys, flatten, load_state_dict, unflatten
from jaxprotect.network import device_params
from jaxprotect.models.stylegan2_ops import (
    MODCONV_MODES,
    equal_linear,
    fir_upsample2x,
    frozen_modconv,
    fused_leaky_relu,
    make_kernel,
    modulated_conv2d,
)

__all__ = ["StyleGAN2Config", "StyleGAN2", "load_stylegan2", "param_shapes", "buffer_shapes"]

# Top-level entries of rosinality checkpoints that are not the generator (train.py / convert_weight.py).
_IGNORED_TOP_LEVEL = ("g", "d", "g_optim", "d_optim", "args")

_WHERE_TO_GET = (
    "jaxprotect does not ship StyleGAN2-FFHQ weights (NVIDIA Source Code License-NC). Pass the rosinality "
    "checkpoint stylegan2-ffhq-config-f.pt that CLIP2Protect and e4e use (Google Drive id "
    "1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT, linked from the encoder4editing README), or a .npz written by "
    "`jaxprotect convert stylegan2 IN OUT`."
)


@dataclasses.dataclass(frozen=True)
class StyleGAN2Config:
    """Architecture of ``Generator(size, style_dim, n_mlp, channel_multiplier, blur_kernel, lr_mlp)``."""

    size: int = 1024
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    blur_kernel: tuple[float, ...] = (1, 3, 3, 1)
    lr_mlp: float = 0.01

    def __post_init__(self):
        if self.size < 4 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 4, got {self.size}")

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def n_latent(self) -> int:
        """Rows of W+: 2*log2(size) - 2 (18 at 1024)."""
        return self.log_size * 2 - 2

    @property
    def num_layers(self) -> int:
        """Noise inputs: 2*(log2(size) - 2) + 1 (17 at 1024)."""
        return (self.log_size - 2) * 2 + 1

    def channels(self, res: int) -> int:
        cm = self.channel_multiplier
        table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}
        if res not in table:
            raise ValueError(f"upstream Generator has no channel count for resolution {res}")
        return table[res]

    def noise_resolutions(self) -> list[int]:
        """Side of noise map i: 4, 8, 8, 16, 16, ... (upstream ``noises.noise_i``)."""
        return [2 ** ((i + 5) // 2) for i in range(self.num_layers)]


def _modconv_shapes(prefix: str, style_dim: int, cin: int, cout: int, k: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.weight": (1, cout, cin, k, k),
        f"{prefix}.modulation.weight": (cin, style_dim),
        f"{prefix}.modulation.bias": (cin,),
    }


def _styled_conv_shapes(prefix: str, style_dim: int, cin: int, cout: int) -> dict[str, tuple[int, ...]]:
    return {
        **_modconv_shapes(f"{prefix}.conv", style_dim, cin, cout, 3),
        f"{prefix}.noise.weight": (1,),
        f"{prefix}.activate.bias": (cout,),
    }


def _to_rgb_shapes(prefix: str, style_dim: int, cin: int) -> dict[str, tuple[int, ...]]:
    return {**_modconv_shapes(f"{prefix}.conv", style_dim, cin, 3, 1), f"{prefix}.bias": (1, 3, 1, 1)}


def param_shapes(cfg: StyleGAN2Config) -> dict[str, tuple[int, ...]]:
    """{``g_ema`` key: shape} of the parameters (no buffers), in upstream ``state_dict`` order."""
    d = cfg.style_dim
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(1, cfg.n_mlp + 1):
        shapes[f"style.{i}.weight"] = (d, d)
        shapes[f"style.{i}.bias"] = (d,)
    c4 = cfg.channels(4)
    shapes["input.input"] = (1, c4, 4, 4)
    shapes.update(_styled_conv_shapes("conv1", d, c4, c4))
    shapes.update(_to_rgb_shapes("to_rgb1", d, c4))
    cin = c4
    for j, lvl in enumerate(range(3, cfg.log_size + 1)):
        cout = cfg.channels(2**lvl)
        shapes.update(_styled_conv_shapes(f"convs.{2 * j}", d, cin, cout))
        shapes.update(_styled_conv_shapes(f"convs.{2 * j + 1}", d, cout, cout))
        cin = cout
    for j, lvl in enumerate(range(3, cfg.log_size + 1)):
        shapes.update(_to_rgb_shapes(f"to_rgbs.{j}", d, cfg.channels(2**lvl)))
    return shapes


def buffer_shapes(cfg: StyleGAN2Config) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """({FIR ``.kernel`` buffer key: shape}, {``noises.noise_i`` key: shape}) in checkpoint layout."""
    kh = len(cfg.blur_kernel)
    kernels = {}
    for j in range(cfg.log_size - 2):
        kernels[f"convs.{2 * j}.conv.blur.kernel"] = (kh, kh)
        kernels[f"to_rgbs.{j}.upsample.kernel"] = (kh, kh)
    noises = {f"noises.noise_{i}": (1, 1, r, r) for i, r in enumerate(cfg.noise_resolutions())}
    return kernels, noises


@dataclasses.dataclass(eq=False)
class StyleGAN2:
    """A StyleGAN2 generator bound to converted weights.

    Attributes: ``config`` (:class:`StyleGAN2Config`), ``params`` (nested dict of the ``g_ema``
    parameters, checkpoint units; an ordinary pytree, so ``jax.grad`` with respect to it
    fine-tunes the generator), ``noise`` (list of the stored noise maps, NHWC (1, r, r, 1), or
    ``None`` when the checkpoint had none), ``latent_avg`` ((style_dim,) or ``None``),
    ``modconv`` (``"activation"`` or ``"weight"``, see :func:`modulated_conv2d`).

    Pure functions (params first; use under ``jit``/``vmap``/``grad``): :meth:`mapping_apply`,
    :meth:`synthesis_apply`, :meth:`styles_apply`. Calling the object runs them jitted with the
    stored params.
    """

    config: StyleGAN2Config
    params: Any
    noise: list | None = None
    latent_avg: Any = None
    modconv: str = "activation"
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.modconv not in MODCONV_MODES:
            raise ValueError(f"modconv must be one of {MODCONV_MODES}, got {self.modconv!r}")

    # ---- static description -------------------------------------------------------------
    @property
    def size(self) -> int:
        """Output side in pixels."""
        return self.config.size

    @property
    def n_latent(self) -> int:
        """Rows of W+ (18 at 1024, 14 at 256)."""
        return self.config.n_latent

    @property
    def style_dim(self) -> int:
        return self.config.style_dim

    @property
    def num_layers(self) -> int:
        """Number of noise maps."""
        return self.config.num_layers

    @property
    def noise_shapes(self) -> list[tuple[int, int, int, int]]:
        """Shapes of the noise maps for batch 1, NHWC: [(1, 4, 4, 1), (1, 8, 8, 1), ...]."""
        return [(1, r, r, 1) for r in self.config.noise_resolutions()]

    # ---- pure functions -------------------------------------------------------------------
    def mapping_apply(self, params, z: jax.Array) -> jax.Array:
        """Mapping network: z [N, style_dim] -> w [N, style_dim] (PixelNorm, n_mlp EqualLinear + lrelu)."""
        x = z * jax.lax.rsqrt(jnp.mean(z * z, axis=1, keepdims=True) + 1e-8)
        for i in range(1, self.config.n_mlp + 1):
            p = params["style"][str(i)]
            x = equal_linear(x, p["weight"], p["bias"], lr_mul=self.config.lr_mlp, activate=True)
        return x

    def _layer_styles(self, params, wplus: jax.Array) -> list[jax.Array]:
        """Modulation outputs s, one [N, C_in] per modulated conv, in upstream call order."""
        wplus = self._as_wplus(wplus)
        out = []
        for name, row in self._layers():
            p = _get(params, name)["conv"]["modulation"]
            out.append(equal_linear(wplus[:, row], p["weight"], p["bias"]))
        return out

    def styles_apply(self, params, wplus: jax.Array) -> jax.Array:
        """StyleSpace code: W+ [N, n_latent, D] -> [N, sum of C_in] (9088 at 1024 config-f).

        The concatenation of every modulation output, ordered conv1, to_rgb1, then per
        resolution conv(up), conv, to_rgb (upstream ``return_latents=True`` style vector).
        """
        return jnp.concatenate(self._layer_styles(params, wplus), axis=1)

    def synthesis_apply(self, params, wplus: jax.Array, noise: Sequence[jax.Array], remat: bool = False,
                        output_stride: int = 1, modconv: str | None = None) -> jax.Array:
        """Synthesis network: W+ [N, n_latent, D] (or w [N, D], broadcast) -> images [N, size, size, 3].

        ``noise``: one array per layer (:attr:`noise_shapes`), NHWC [1 or N, r, r, 1].
        ``remat=True`` wraps each resolution block in ``jax.checkpoint`` (less memory in the
        backward pass, one extra forward). Images are raw and unclamped, NHWC float32.
        ``output_stride`` s > 1 returns only pixels (s*i, s*j), [N, size/s, size/s, 3] (equal to
        the full image ``[:, ::s, ::s]`` up to float rounding): the last block's second conv and
        ToRGB run only there, which is what a loss on a nearest-downsampled image needs.
        ``modconv`` overrides :attr:`modconv` for this call (``"weight"`` is the cheaper backward
        when the weights themselves are differentiated, ``"activation"`` when only W+ and noise are).
        """
        if modconv is not None and modconv != self.modconv:
            other = dataclasses.replace(self, modconv=modconv)
            return other.synthesis_apply(params, wplus, noise, remat, output_stride)
        cfg = self.config
        wplus = self._as_wplus(wplus)
        noise = self._check_noise(noise, wplus.shape[0])
        styles = self._layer_styles(params, wplus)
        n = wplus.shape[0]
        const = jnp.transpose(params["input"]["input"], (0, 2, 3, 1))
        x = jnp.broadcast_to(const, (n,) + const.shape[1:])
        x = self._styled_conv(params["conv1"], x, styles[0], noise[0], upsample=False)
        skip = self._to_rgb(params["to_rgb1"], x, styles[1], None)

        def block(p_up, p_conv, p_rgb, x, skip, s, n1, n2, stride=1):
            x = self._styled_conv(p_up, x, s[0], n1, upsample=True)
            x = self._styled_conv(p_conv, x, s[1], n2, upsample=False, stride=stride)
            return x, self._to_rgb(p_rgb, x, s[2], skip, stride=stride)

        if remat:
            block = jax.checkpoint(block, static_argnums=(8,))
        n_blocks = cfg.log_size - 2
        if n_blocks == 0 and output_stride != 1:
            raise ValueError("output_stride needs at least one upsampling block")
        for j in range(n_blocks):
            s = styles[2 + 3 * j: 5 + 3 * j]
            x, skip = block(
                params["convs"][str(2 * j)], params["convs"][str(2 * j + 1)], params["to_rgbs"][str(j)],
                x, skip, s, noise[1 + 2 * j], noise[2 + 2 * j], output_stride if j == n_blocks - 1 else 1,
            )
        return skip

    def frozen_layout(self, params):
        """``params`` with every modulated convolution's ``weight`` replaced by its
        :func:`~jaxprotect.models.stylegan2_ops.frozen_modconv` layout, for :meth:`synthesis_apply` in the
        activation formulation when the weights are not differentiated (a latent search): the kernels' scale,
        layout copies and squared sums are then computed once instead of on every call. Same images."""
        out = jax.tree.map(lambda a: a, params)  # new containers, same arrays
        for name, _ in self._layers():
            p = _get(out, name)["conv"]
            upsample = name.startswith("convs.") and int(name.split(".")[1]) % 2 == 0
            p["weight"] = frozen_modconv(p["weight"], upsample=upsample)
        return out

    # ---- layers ---------------------------------------------------------------------------
    def _styled_conv(self, p, x, s, noise, upsample, stride=1):
        x = modulated_conv2d(
            x, p["conv"]["weight"], s, demodulate=True, upsample=upsample,
            blur_kernel=self.config.blur_kernel, mode=self.modconv, stride=stride,
        )
        x = x + p["noise"]["weight"] * noise[:, ::stride, ::stride]  # NoiseInjection: weight (1,) * noise, broadcast over C
        return fused_leaky_relu(x, p["activate"]["bias"])

    def _to_rgb(self, p, x, s, skip, stride=1):
        # x is already at the output stride (the 1x1 conv runs on the kept pixels only)
        out = modulated_conv2d(x, p["conv"]["weight"], s, demodulate=False, mode=self.modconv)
        out = out + p["bias"].reshape(1, 1, 1, 3)
        if skip is not None:
            kh = len(self.config.blur_kernel)
            # models/stylegan2/model.py Upsample: pad0 = (p + 1)//2 + 1, pad1 = p//2 with p = kh - 2
            pad = ((kh - 2 + 1) // 2 + 1, (kh - 2) // 2)
            out = out + fir_upsample2x(skip, self.config.blur_kernel, pad, gain=4.0)[:, ::stride, ::stride]
        return out

    def _layers(self) -> list[tuple[str, int]]:
        """(param path, W+ row) of every modulated conv, in call order."""
        layers = [("conv1", 0), ("to_rgb1", 1)]
        for j in range(self.config.log_size - 2):
            i = 1 + 2 * j
            layers += [(f"convs.{2 * j}", i), (f"convs.{2 * j + 1}", i + 1), (f"to_rgbs.{j}", i + 2)]
        return layers

    def _as_wplus(self, wplus):
        wplus = jnp.asarray(wplus)
        if wplus.ndim == 2 and wplus.shape[1] == self.style_dim:
            return jnp.broadcast_to(wplus[:, None, :], (wplus.shape[0], self.n_latent, self.style_dim))
        if wplus.ndim != 3 or wplus.shape[1:] != (self.n_latent, self.style_dim):
            raise ValueError(
                f"expected W+ of shape [N, {self.n_latent}, {self.style_dim}] (or w [N, {self.style_dim}]), "
                f"got {tuple(wplus.shape)}"
            )
        return wplus

    def _check_noise(self, noise, batch: int) -> list:
        if noise is None:
            raise ValueError(self._no_noise_message())
        noise = list(noise)
        if len(noise) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} noise maps, got {len(noise)}")
        for i, (nz, (_, r, _, _)) in enumerate(zip(noise, self.noise_shapes)):
            shape = tuple(np.shape(nz))
            if len(shape) != 4 or shape[1:] != (r, r, 1) or shape[0] not in (1, batch):
                raise ValueError(
                    f"noise map {i} must be NHWC [1 or {batch}, {r}, {r}, 1], got {shape} "
                    "(checkpoint buffers are NCHW (1, 1, r, r): transpose with (0, 2, 3, 1))"
                )
        return noise

    def _no_noise_message(self) -> str:
        return (
            "this generator has no stored noise maps (the checkpoint had no noises.noise_i buffers): "
            "pass noise=[...] (see noise_shapes) or key=jax.random.key(...) for fresh noise"
        )

    # ---- convenience (jitted, stored params) ----------------------------------------------
    def make_noise(self, key: jax.Array, batch: int = 1) -> list[jax.Array]:
        """Fresh N(0, 1) noise maps from ``key``: a list of [batch, r, r, 1] float32 arrays.

        Deterministic per key; never called implicitly without a key.
        """
        keys = jax.random.split(key, self.num_layers)
        return [jax.random.normal(k, (batch, r, r, 1), jnp.float32) for k, (_, r, _, _) in zip(keys, self.noise_shapes)]

    def truncate(self, w: jax.Array, psi: float, truncation_latent: jax.Array | None = None) -> jax.Array:
        """Truncation trick ``t + psi * (w - t)`` on w [N, D] or W+ [N, L, D]; ``t`` defaults to ``latent_avg``."""
        t = self.latent_avg if truncation_latent is None else truncation_latent
        if t is None:
            raise ValueError("no truncation_latent given and the checkpoint had no latent_avg")
        t = jnp.asarray(t)
        return t + psi * (w - t)

    @property
    def _jit_synthesis(self):
        return _jitted(self.config, self.modconv, "synthesis_apply")

    @property
    def _jit_mapping(self):
        return _jitted(self.config, self.modconv, "mapping_apply")

    @property
    def _jit_styles(self):
        return _jitted(self.config, self.modconv, "styles_apply")

    def _resolve_noise(self, noise, key, batch):
        if noise is not None and key is not None:
            raise ValueError("give either noise or key, not both")
        if key is not None:
            return self.make_noise(key, batch)
        if noise is not None:
            return list(noise)
        if self.noise is None:
            raise ValueError(self._no_noise_message())
        return self.noise

    def __call__(self, wplus: jax.Array, noise: Sequence[jax.Array] | None = None, key: jax.Array | None = None,
                 remat: bool = False) -> jax.Array:
        """Images [N, size, size, 3] (NHWC, raw, unclamped) from W+ [N, n_latent, D] (or w [N, D]).

        Noise: the stored maps by default; ``noise=[...]`` (NHWC [1 or N, r, r, 1]) to give them;
        ``key=`` for fresh N(0, 1) maps drawn from that key.
        """
        wplus = jnp.asarray(wplus, jnp.float32)
        return self._jit_synthesis(self.params, wplus, self._resolve_noise(noise, key, wplus.shape[0]), remat=remat)

    def mapping(self, z: jax.Array) -> jax.Array:
        """w [N, D] from z [N, D] (jitted :meth:`mapping_apply` with the stored params)."""
        return self._jit_mapping(self.params, jnp.asarray(z, jnp.float32))

    def styles(self, wplus: jax.Array) -> jax.Array:
        """StyleSpace vector [N, sum C_in] of W+ (jitted :meth:`styles_apply`)."""
        return self._jit_styles(self.params, jnp.asarray(wplus, jnp.float32))

    def from_z(self, z: jax.Array, truncation: float = 1.0, truncation_latent=None, noise=None, key=None) -> jax.Array:
        """Upstream ``G([z])``: mapping, optional truncation, w broadcast to every layer, synthesis."""
        w = self.mapping(z)
        if truncation < 1:
            w = self.truncate(w, truncation, truncation_latent)
        return self(self._as_wplus(w), noise=noise, key=key)

    def to_flat(self) -> dict[str, np.ndarray]:
        """Everything needed to reload: {``g_ema`` key: array} in checkpoint layout + ``latent_avg``.

        Params, the noise buffers (NCHW (1, 1, r, r), as upstream stores them) when present, and
        ``latent_avg`` when present; :func:`load_stylegan2` reads this back (e.g. via ``save_flat``).
        """
        flat = {k: np.asarray(v) for k, v in flatten(self.params).items()}
        if self.noise is not None:
            for i, nz in enumerate(self.noise):
                flat[f"noises.noise_{i}"] = np.transpose(np.asarray(nz), (0, 3, 1, 2))
        if self.latent_avg is not None:
            flat["latent_avg"] = np.asarray(self.latent_avg)
        return flat


@functools.lru_cache(maxsize=None)
def _jitted(config: StyleGAN2Config, modconv: str, method: str):
    """One jitted pure function per architecture, shared by every generator with that config."""
    shell = StyleGAN2(config, params=None, modconv=modconv)
    static = ("remat", "output_stride", "modconv") if method == "synthesis_apply" else ()
    return jax.jit(getattr(shell, method), static_argnames=static)


def _get(params, dotted: str):
    for part in dotted.split("."):
        params = params[part]
    return params


def _infer_config(sd: Mapping[str, np.ndarray], **overrides) -> StyleGAN2Config:
    """Architecture from the keys and shapes; explicit ``overrides`` win (mismatches surface in check_keys)."""
    kw = {k: v for k, v in overrides.items() if v is not None}
    if "n_mlp" not in kw:
        n = [int(k.split(".")[1]) for k in sd if k.startswith("style.") and k.endswith(".weight")]
        if n:
            kw["n_mlp"] = max(n)
    if "style_dim" not in kw and "style.1.weight" in sd:
        kw["style_dim"] = int(np.shape(sd["style.1.weight"])[1])
    if "size" not in kw:
        n_conv = {int(k.split(".")[1]) for k in sd if k.startswith("convs.")}
        kw["size"] = 2 ** (2 + (max(n_conv) + 2) // 2) if n_conv else 4
    log_size = int(math.log2(kw["size"]))
    if "channel_multiplier" not in kw and log_size >= 6:
        key = "convs.6.conv.weight"  # first conv at 64x64: 256 * channel_multiplier outputs
        if key in sd:
            out = int(np.shape(sd[key])[1])
            if out % 256:
                raise CheckpointKeyError(f"{key}: {out} output channels is not 256 * channel_multiplier")
            kw["channel_multiplier"] = out // 256
    return StyleGAN2Config(**kw)


def _split_top_level(flat: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Separate the generator state dict (``g_ema.*`` or bare keys) from ``latent_avg``."""
    latent_avg = flat.pop("latent_avg", None)
    if any(k.startswith("g_ema.") for k in flat):
        sd, stray = {}, []
        for k, v in flat.items():
            head = k.split(".", 1)[0]
            if head == "g_ema":
                sd[k[len("g_ema."):]] = v
            elif head not in _IGNORED_TOP_LEVEL:
                stray.append(k)
        if stray:
            raise CheckpointKeyError(
                f"stylegan2 checkpoint has unexpected top-level entries ({len(stray)}): {', '.join(sorted(stray))} "
                f"(expected g_ema, latent_avg and optionally {', '.join(_IGNORED_TOP_LEVEL)})"
            )
        return sd, latent_avg
    return dict(flat), latent_avg


def load_stylegan2(
    checkpoint=None,
    *,
    size: int | None = None,
    channel_multiplier: int | None = None,
    style_dim: int | None = None,
    n_mlp: int | None = None,
    blur_kernel: Sequence[float] = (1, 3, 3, 1),
    lr_mlp: float = 0.01,
    modconv: str = "activation",
) -> StyleGAN2:
    """Load a rosinality-layout StyleGAN2 generator (registry name ``"stylegan2"``).

    ``checkpoint``: a path to ``stylegan2-ffhq-config-f.pt`` (top-level ``g_ema`` + ``latent_avg``;
    ``g``, ``d``, ``g_optim``, ``d_optim``, ``args`` are ignored), a mapping {key: array} of the
    ``g_ema`` state dict (``latent_avg`` may sit beside the keys), or a ``.npz``/``.safetensors``
    written from :meth:`StyleGAN2.to_flat` or from ``flatten(g.params)``. Size, channel
    multiplier, style_dim and n_mlp are inferred from the keys unless given. FIR ``.kernel``
    buffers are optional and must equal ``make_kernel(blur_kernel) * 4``; ``noises.noise_i``
    buffers are optional (all or none). Raises :class:`CheckpointKeyError` naming every
    missing, unexpected or mis-shaped key. Pickled code is never run.
    """
    if checkpoint is None:
        raise FileNotFoundError(_WHERE_TO_GET)
    flat = load_state_dict(checkpoint)
    sd, latent_avg = _split_top_level(flat)
    cfg = _infer_config(
        sd, size=size, channel_multiplier=channel_multiplier, style_dim=style_dim, n_mlp=n_mlp,
        blur_kernel=tuple(float(v) for v in blur_kernel), lr_mlp=lr_mlp,
    )
    kernel_shapes, noise_shapes = buffer_shapes(cfg)
    expected_kernel = make_kernel(cfg.blur_kernel) * 4.0
    bad_kernels = []
    for k in kernel_shapes:
        if k in sd:
            v = np.asarray(sd.pop(k), np.float32)
            if v.shape != expected_kernel.shape or not np.allclose(v, expected_kernel, rtol=1e-6, atol=1e-9):
                bad_kernels.append(k)
    if bad_kernels:
        raise CheckpointKeyError(
            f"stylegan2 FIR buffers differ from make_kernel({list(cfg.blur_kernel)}) * 4: {', '.join(bad_kernels)} "
            "(pass blur_kernel= if the generator was built with another filter)"
        )
    present = [k for k in noise_shapes if k in sd]
    noise = None
    if present:
        noise_sd = {k: sd.pop(k) for k in present}
        noise_sd = check_keys(noise_sd, noise_shapes, what="stylegan2 noise buffers (all or none)")
        noise = [jnp.asarray(np.transpose(noise_sd[k], (0, 2, 3, 1))) for k in noise_shapes]
    params_flat = check_keys(sd, param_shapes(cfg), what=f"stylegan2 (size {cfg.size}, channel_multiplier "
                                                          f"{cfg.channel_multiplier}) checkpoint")
    if latent_avg is not None:
        latent_avg = np.asarray(latent_avg, np.float32)
        if latent_avg.shape != (cfg.style_dim,):
            raise CheckpointKeyError(f"latent_avg: shape {latent_avg.shape} != expected ({cfg.style_dim},)")
        latent_avg = jnp.asarray(latent_avg)
    tree = unflatten(params_flat)
    del flat, sd, params_flat  # the tree holds the only references: each host array goes once moved
    params = device_params(tree)
    info = {"source": os.fspath(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else "mapping"}
    return StyleGAN2(cfg, params, noise=noise, latent_avg=latent_avg, modconv=modconv, info=info)
