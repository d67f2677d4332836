"""StyleGAN2 numerics in ``jnp``/``lax``: FIR up/down-sampling, fused leaky ReLU, modulated convolution.

Ported from the ops CLIP2Protect runs (``models/stylegan2/op/upfirdn2d.py`` ``upfirdn2d_native``,
``op/fused_act.py``, ``models/stylegan2/model.py`` ``ModulatedConv2d``; rosinality/stylegan2-pytorch).
Activations are NHWC; conv weights arrive in the checkpoint layout ``(1, O, I, k, k)`` and
are laid out for XLA here, at run time.

:func:`upfirdn2d` is the general reference (zero insertion, pad/crop, true convolution with
the 2-D kernel, decimation). The generator uses faster equivalents that exploit the structure
of its filters: the FIR kernel is the outer product of a 1-D kernel (``make_kernel``), so it is
applied as two 1-D passes of shifted slices (XLA fuses them into one loop; its depthwise
convolution is about 10x slower on CPU), and the stride-2 transposed convolution is computed as
four sub-pixel ("phase") convolutions stacked into one ordinary convolution, which skips the
multiplications by inserted zeros.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "SQRT2",
    "MODCONV_MODES",
    "make_kernel",
    "upfirdn2d",
    "fir_filter",
    "fir_upsample2x",
    "fused_leaky_relu",
    "equal_linear",
    "modulated_conv2d",
]

SQRT2 = math.sqrt(2.0)
MODCONV_MODES = ("activation", "weight")

_DN = ("NHWC", "HWIO", "NHWC")


def make_kernel(k: Sequence[float]) -> np.ndarray:
    """Upstream ``make_kernel``: a 1-D list becomes its outer product; normalised to sum 1.

    Returns a float32 (kh, kw) numpy array, the value of the ``.kernel`` buffers divided by
    their gain (upsampling filters store ``make_kernel(k) * factor**2``).
    """
    k = np.asarray(k, dtype=np.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return (k / k.sum()).astype(np.float32)


def upfirdn2d(x: jax.Array, kernel, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> jax.Array:
    """Reference ``upfirdn2d_native`` on NHWC: upsample by zero insertion, pad, FIR, decimate.

    ``x`` [N, H, W, C]; ``kernel`` 2-D (kh, kw), applied as a true convolution (flipped) to every
    channel; ``pad = (pad0, pad1)`` on both spatial axes (negative crops). Returns
    [N, (H*up + pad0 + pad1 - kh)//down + 1, ..., C]. Slow (a depthwise convolution); the
    generator uses :func:`fir_filter` / :func:`fir_upsample2x`, which tests check against this.
    """
    kernel = jnp.asarray(kernel, x.dtype)
    kh, kw = kernel.shape
    c = x.shape[-1]
    p0, p1 = pad
    zero = jnp.zeros((), x.dtype)
    x = lax.pad(x, zero, ((0, 0, 0), (p0, p1 + up - 1, up - 1), (p0, p1 + up - 1, up - 1), (0, 0, 0)))
    w = jnp.tile(jnp.flip(kernel, (0, 1))[:, :, None, None], (1, 1, 1, c))  # [kh, kw, 1, C]
    return lax.conv_general_dilated(
        x, w, (down, down), "VALID", dimension_numbers=_DN, feature_group_count=c,
        precision=lax.Precision.HIGHEST,
    )


def _fir_valid_1d(x: jax.Array, taps: Sequence[float], axis: int) -> jax.Array:
    # true convolution: the flipped taps slide over x without padding
    n = x.shape[axis] - len(taps) + 1
    out = None
    for j, t in enumerate(taps[::-1]):
        term = lax.slice_in_dim(x, j, j + n, axis=axis) * t
        out = term if out is None else out + term
    return out


def _taps(k: Sequence[float], gain: float) -> tuple[list[float], list[float]]:
    k = np.asarray(k, np.float64)
    if k.ndim != 1:
        raise ValueError(f"separable FIR needs a 1-D kernel, got shape {k.shape}")
    k = k / k.sum()
    return [float(v) for v in k * gain], [float(v) for v in k]


def fir_filter(x: jax.Array, k: Sequence[float], pad: tuple[int, int], gain: float = 1.0) -> jax.Array:
    """``upfirdn2d(x, make_kernel(k) * gain, pad=pad)`` for a 1-D ``k``, as two separable passes.

    ``x`` [N, H, W, C] -> [N, H + pad0 + pad1 - len(k) + 1, ..., C] (upstream ``Blur``).
    """
    zero = jnp.zeros((), x.dtype)
    p0, p1 = pad
    x = lax.pad(x, zero, ((0, 0, 0), (p0, p1, 0), (p0, p1, 0), (0, 0, 0)))
    ta, tb = _taps(k, gain)
    return _fir_valid_1d(_fir_valid_1d(x, ta, 1), tb, 2)


def fir_upsample2x(x: jax.Array, k: Sequence[float], pad: tuple[int, int], gain: float = 4.0) -> jax.Array:
    """``upfirdn2d(x, make_kernel(k) * gain, up=2, pad=pad)`` for a 1-D ``k`` (upstream ``Upsample``).

    ``x`` [N, H, W, C] -> [N, 2H + pad0 + pad1 - len(k) + 1, ..., C].
    """
    zero = jnp.zeros((), x.dtype)
    p0, p1 = pad
    x = lax.pad(x, zero, ((0, 0, 0), (p0, p1 + 1, 1), (p0, p1 + 1, 1), (0, 0, 0)))
    ta, tb = _taps(k, gain)
    return _fir_valid_1d(_fir_valid_1d(x, ta, 1), tb, 2)


def fused_leaky_relu(x: jax.Array, bias: jax.Array, negative_slope: float = 0.2, scale: float = SQRT2) -> jax.Array:
    """``leaky_relu(x + bias, 0.2) * sqrt(2)`` with ``bias`` on the last (channel) axis.

    Gradient at exactly 0 is the negative slope, as PyTorch's ``leaky_relu`` backward.
    """
    y = x + bias
    return jnp.where(y > 0, y, y * negative_slope) * scale


def _dot_t(x: jax.Array, w: jax.Array, chunk: int = 32) -> jax.Array:
    """``x @ w.T`` summed as partial dots of ``chunk`` terms, then across chunks.

    XLA's CPU dot accumulates float32 sequentially: through the 8 mapping layers that drifts
    ~9e-6 from the float64 reference (the golden tolerance is 1e-5); partial sums stay ~1e-6.
    """
    n_in = x.shape[-1]
    if n_in % chunk or n_in == chunk:
        return x @ w.T
    xs = x.reshape(*x.shape[:-1], n_in // chunk, chunk)
    ws = w.reshape(w.shape[0], n_in // chunk, chunk)
    return jnp.einsum("...kc,okc->...ok", xs, ws).sum(-1)


def equal_linear(x: jax.Array, weight: jax.Array, bias: jax.Array, lr_mul: float = 1.0, activate: bool = False) -> jax.Array:
    """Upstream ``EqualLinear``: ``x @ (W * lr_mul/sqrt(in)).T + b * lr_mul`` (bias before the activation).

    ``x`` [N, in], ``weight`` (out, in) and ``bias`` (out,) in checkpoint units; with
    ``activate`` the fused leaky ReLU follows.
    """
    scale = (1.0 / math.sqrt(weight.shape[1])) * lr_mul
    y = _dot_t(x, weight * scale)
    if activate:
        return fused_leaky_relu(y, bias * lr_mul)
    return y + bias * lr_mul


def _phase_kernel(w: jax.Array) -> jax.Array:
    """Stride-2 transposed-conv kernel (k, k, I, O) -> one conv kernel (A, A, I, 4*O), A = ceil(k/2).

    Output phase (py, px) of ``conv_transpose(x, w, stride=2)`` at (2m+py, 2n+px) is a plain
    correlation of x (padded by A-1) with taps ``w[py + 2(A-1-u), px + 2(A-1-v)]`` over an A x A
    window; the four phases are stacked on the output-channel axis as (py, px, O).
    """
    k = w.shape[0]
    a = (k + 1) // 2
    wp = jnp.pad(w, ((0, 2 * a - k), (0, 2 * a - k), (0, 0), (0, 0)))
    idx = np.array([[p + 2 * (a - 1 - u) for u in range(a)] for p in range(2)])  # [phase, window]
    g = wp[idx[:, :, None, None], idx[None, None, :, :]]  # [py, u, px, v, I, O]
    g = jnp.transpose(g, (1, 3, 4, 0, 2, 5))  # [u, v, I, py, px, O]
    return g.reshape(a, a, w.shape[2], 4 * w.shape[3])


def _conv_transpose2x(x: jax.Array, w: jax.Array) -> jax.Array:
    """``conv_transpose2d(x, w, stride=2, padding=0)`` plus one trailing zero row and column.

    ``x`` [N, H, W, I], ``w`` (k, k, I, O) with odd k: returns [N, 2H+k-1, 2W+k-1, O]; the last
    row/column is exactly zero (it only sees the zero padding), which the following blur's pad
    absorbs.
    """
    k = w.shape[0]
    a = (k + 1) // 2
    n, h, wd, _ = x.shape
    o = w.shape[3]
    y = lax.conv_general_dilated(x, _phase_kernel(w), (1, 1), ((a - 1, a - 1), (a - 1, a - 1)), dimension_numbers=_DN)
    hh, ww = h + a - 1, wd + a - 1
    y = y.reshape(n, hh, ww, 2, 2, o).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, 2 * hh, 2 * ww, o)


def _conv(x: jax.Array, w: jax.Array) -> jax.Array:
    k = w.shape[0]
    if k == 1:
        return jnp.einsum("nhwi,io->nhwo", x, w[0, 0])
    p = k // 2
    return lax.conv_general_dilated(x, w, (1, 1), ((p, p), (p, p)), dimension_numbers=_DN)


def _upsample_blur_pad(k: int, blur_kernel: Sequence[float]) -> tuple[int, int]:
    # models/stylegan2/model.py ModulatedConv2d(upsample=True): Blur pad after the transposed conv
    p = (len(blur_kernel) - 2) - (k - 1)
    return (p + 1) // 2 + 1, p // 2 + 1


def modulated_conv2d(
    x: jax.Array,
    weight: jax.Array,
    style: jax.Array,
    *,
    demodulate: bool = True,
    upsample: bool = False,
    blur_kernel: Sequence[float] = (1, 3, 3, 1),
    mode: str = "activation",
) -> jax.Array:
    """Upstream ``ModulatedConv2d.forward`` (after the modulation linear layer) on NHWC.

    ``x`` [N, H, W, I]; ``weight`` (1, O, I, k, k) in checkpoint units; ``style`` [N, I] (the
    StyleSpace code ``s``). Returns [N, H, W, O], or [N, 2H, 2W, O] with ``upsample``
    (stride-2 transposed conv, then the [1,3,3,1] blur with gain 4).

    ``mode="weight"`` is the reference formulation: per-sample weights
    ``W' = scale * weight * s``, demodulated by ``rsqrt(sum W'^2 + 1e-8)``, one grouped conv.
    ``mode="activation"`` (rosinality's ``fused=False``) scales the input by ``s`` and the output
    by the same demodulation factor, convolving with the shared ``scale * weight``: equal
    mathematically, different float rounding, and its backward needs no weight-gradient
    convolution when only the latents are differentiated.
    """
    if mode not in MODCONV_MODES:
        raise ValueError(f"mode must be one of {MODCONV_MODES}, got {mode!r}")
    _, o, i, k, _ = weight.shape
    scale = 1.0 / math.sqrt(i * k * k)
    base = scale * weight[0]  # (O, I, k, k), upstream `self.scale * self.weight`
    wmod = base[None] * style[:, None, :, None, None]  # (N, O, I, k, k)
    demod = lax.rsqrt(jnp.sum(wmod * wmod, axis=(2, 3, 4)) + 1e-8) if demodulate else None  # (N, O)

    if mode == "weight":
        if demodulate:
            wmod = wmod * demod[:, :, None, None, None]
        w_hwio = jnp.transpose(wmod, (0, 3, 4, 2, 1))  # (N, k, k, I, O)
        op = _conv_transpose2x if upsample else _conv
        if x.shape[0] == 1:
            out = op(x, w_hwio[0])
        else:
            out = jax.vmap(lambda xi, wi: op(xi[None], wi)[0])(x, w_hwio)
    else:
        w_hwio = jnp.transpose(base, (2, 3, 1, 0))  # (k, k, I, O)
        xs = x * style[:, None, None, :]
        out = _conv_transpose2x(xs, w_hwio) if upsample else _conv(xs, w_hwio)
        if demodulate:
            out = out * demod[:, None, None, :]
    if upsample:
        p0, p1 = _upsample_blur_pad(k, blur_kernel)
        out = fir_filter(out, blur_kernel, (p0, p1 - 1), gain=4.0)  # -1: _conv_transpose2x's zero row
    return out
