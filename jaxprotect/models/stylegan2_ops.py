"""StyleGAN2 numerics in ``jnp``/``lax``: FIR up/down-sampling, fused leaky ReLU, modulated convolution.

Ported from the ops CLIP2Protect runs (``models/stylegan2/op/upfirdn2d.py`` ``upfirdn2d_native``,
``op/fused_act.py``, ``models/stylegan2/model.py`` ``ModulatedConv2d``; rosinality/stylegan2-pytorch).
Activations are NHWC; conv weights stay in the checkpoint layout (O, I, k, k) and XLA chooses
its own layout, except where a frozen generator's weights are laid out once (:func:`frozen_modconv`).

:func:`upfirdn2d` is the general reference (zero insertion, pad/crop, true convolution with the
2-D kernel, decimation). The generator uses faster equivalents built on the structure of its
filters, checked against it in the tests:

* the FIR kernel is the outer product of a 1-D kernel (``make_kernel``), so it runs as two 1-D
  passes of shifted slices that XLA fuses into one loop (XLA's CPU depthwise convolution is
  ~10x slower); the slices carry their own VJP (:func:`_shift_sum`);
* the stride-2 transposed convolution is split into its four sub-pixel phases: the 3x3 taps
  are grouped by the shift they need, each group is one matrix product, and the blur is applied
  to the phases before a single interleave. No multiplication by inserted zeros (an
  lhs-dilated convolution does 4x the multiplications), and gradients are matrix products:
  XLA's CPU weight-gradient convolution for the equivalent stacked 2x2 phase kernel took ~100x
  its forward time (36 s vs 0.3 s at 512->1024).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

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
    "conv_transpose2x_blur",
    "FrozenModConv",
    "frozen_modconv",
    "conv_weight_grad",
    "conv_same_matmul_wgrad",
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


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _shift_sum(srcs: tuple, terms: tuple, out_len: int, axis: int) -> jax.Array:
    """out[r] = sum of coef * srcs[i][r + offset] over ``terms`` = ((i, offset, coef), ...), zero outside.

    All sources share every axis but ``axis``; ``out`` has ``out_len`` entries there. Each source
    is zero-padded once (only if an offset reaches outside it), every term is then a slice, and
    XLA fuses the sum into one loop. The VJP is the same operation on the cotangent with negated
    offsets: autodiff would instead turn every slice into its own padded full-size array.
    """
    lo = [0] * len(srcs)
    hi = [0] * len(srcs)
    for i, off, _ in terms:
        lo[i] = max(lo[i], -off)
        hi[i] = max(hi[i], off + out_len - srcs[i].shape[axis])
    padded = []
    for i, x in enumerate(srcs):
        if lo[i] or hi[i]:
            cfg = [(0, 0, 0)] * x.ndim
            cfg[axis] = (lo[i], hi[i], 0)
            x = lax.pad(x, jnp.zeros((), x.dtype), cfg)
        padded.append(x)
    out = None
    for i, off, coef in terms:
        term = lax.slice_in_dim(padded[i], off + lo[i], off + lo[i] + out_len, axis=axis) * coef
        out = term if out is None else out + term
    return out


def _shift_sum_fwd(srcs, terms, out_len, axis):
    return _shift_sum(srcs, terms, out_len, axis), tuple(x.shape[axis] for x in srcs)


def _shift_sum_bwd(terms, out_len, axis, lengths, ct):
    grads = []
    for i, length in enumerate(lengths):
        mine = tuple((0, -off, coef) for j, off, coef in terms if j == i)
        grads.append(_shift_sum((ct,), mine, length, axis) if mine else jnp.zeros(
            ct.shape[:axis] + (length,) + ct.shape[axis + 1:], ct.dtype))
    return (tuple(grads),)


_shift_sum.defvjp(_shift_sum_fwd, _shift_sum_bwd)


def _fir_valid_1d(x: jax.Array, taps: Sequence[float], axis: int) -> jax.Array:
    # true convolution: the flipped taps slide over x without padding
    n = x.shape[axis] - len(taps) + 1
    return _shift_sum((x,), tuple((0, j, float(t)) for j, t in enumerate(taps[::-1])), n, axis)


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
    # one multiply by a select of scalars: its VJP is one multiply too (no zero or constant
    # arrays materialised); (y * 0.2) * sqrt(2) upstream vs y * (0.2 * sqrt(2)) here: 1 ulp at most
    return y * jnp.where(y > 0, scale, negative_slope * scale).astype(y.dtype)


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


def _kernel_size(w: jax.Array, layout: str) -> int:
    return w.shape[layout.index("H")]


def _xla_conv_same(x: jax.Array, w: jax.Array, stride: int, layout: str = "OIHW") -> jax.Array:
    p = _kernel_size(w, layout) // 2
    return lax.conv_general_dilated(x, w, (stride, stride), ((p, p), (p, p)),
                                    dimension_numbers=("NHWC", layout, "NHWC"))


def _pixels(x: jax.Array) -> jax.Array:
    """[..., C] -> [pixels, C] (a bitcast for a contiguous array)."""
    return x.reshape(-1, x.shape[-1])


def _pixel_dot(a: jax.Array, b: jax.Array) -> jax.Array:
    """a [M, O], b [M, I] -> a^T b (O, I), contracted over the leading (pixel) axis of both.

    Written as a 2-D dot_general contracting dimension 0, XLA:CPU keeps it as one library matrix
    product. The same contraction over (N, H, W) of 4-D arrays is first rewritten into a transposed
    copy of ``a`` and a product that runs at a quarter of the speed when O and I are small
    (``experiments/results/finetune_profile.md`` §5).
    """
    return lax.dot_general(a, b, (((0,), (0,)), ((), ())))


def _pixel_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x [..., I] times w (O, I) transposed -> [..., O], as one 2-D product (its weight gradient is
    a :func:`_pixel_dot`)."""
    return (_pixels(x) @ w.T).reshape(*x.shape[:-1], w.shape[0])


# below this many (O x I) weights per tap, each tap's product is a skinny (pixels x O)^T (pixels x I)
# dot that is fastest as _pixel_dot; above it, XLA's own 4-D contraction is as fast or faster
# (finetune_profile.md §5)
_SKINNY_WGRAD = 64 * 64


def conv_weight_grad(x: jax.Array, g: jax.Array, k: int, stride: int = 1, layout: str = "OIHW") -> jax.Array:
    """Gradient w.r.t. w of ``sum(g * conv_same(x, w, stride))``, as matrix products.

    ``x`` [N, H, W, I], ``g`` [N, H/s, W/s, O] (the output's cotangent). Tap (a, b) is
    ``g^T @ x_pad[:, a::s, b::s]`` contracted over (N, h, w): one (O, I) matrix product on a shifted
    view of the padded input (for narrow layers a 2-D :func:`_pixel_dot`, at stride 1 grouped per
    row offset by :func:`_weight_grad_shifted_rows`). XLA's CPU weight-gradient convolution runs on
    one thread and took 3-4x as long at the generator's sizes
    (``experiments/results/finetune_profile.md``). Returns (O, I, k, k), or (k, k, O, I) with
    ``layout="HWOI"``.
    """
    n, ho, wo, o = g.shape
    i = x.shape[-1]
    skinny = o * i <= _SKINNY_WGRAD
    if skinny and stride == 1:
        taps = _weight_grad_shifted_rows(x, g, k)
    else:
        p = k // 2
        xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (p, p, 0), (p, p, 0), (0, 0, 0)))
        views = [lax.slice(xp, (0, a, b, 0), (n, a + stride * (ho - 1) + 1, b + stride * (wo - 1) + 1, i),
                           (1, stride, stride, 1)) for a in range(k) for b in range(k)]
        if skinny:
            gf = _pixels(g)
            taps = [_pixel_dot(gf, _pixels(v)) for v in views]
        else:
            taps = [jnp.einsum("nhwo,nhwi->oi", g, v) for v in views]
        taps = jnp.stack(taps, axis=0)  # (k*k, O, I)
    if layout == "HWOI":  # taps stacked on the leading axis: contiguous blocks, no strided stack
        return taps.reshape(k, k, o, i)
    return jnp.moveaxis(taps, 0, -1).reshape(o, i, k, k)


def _weight_grad_shifted_rows(x: jax.Array, g: jax.Array, k: int) -> jax.Array:
    """:func:`conv_weight_grad` at stride 1 as k products, one per row offset: (k*k, O, I).

    With x zero-padded to width Wp and flattened, tap (a, b) pairs g's pixel q = h*Wp + w (g padded
    to width Wp with zeros) with x's pixel q + a*Wp + b. The k column offsets b go on g's side, as
    k shifted copies side by side ([pixels, k*O]); each row offset a is then one product with a
    contiguous run of x's pixels, k*O wide instead of O.
    """
    p = k // 2
    n, h, w, o = g.shape
    i = x.shape[-1]
    wp = w + 2 * p
    zero = jnp.zeros((), x.dtype)
    # one extra bottom row: the last run reaches k - 1 pixels past the padded image (read against zeros of g)
    xf = lax.pad(x, zero, ((0, 0, 0), (p, p + 1, 0), (p, p, 0), (0, 0, 0))).reshape(n, -1, i)
    gf = lax.pad(g, zero, ((0, 0, 0), (0, 0, 0), (0, 2 * p, 0), (0, 0, 0))).reshape(n, h * wp, o)
    m = h * wp + k - 1
    g_cols = jnp.concatenate([lax.pad(gf, zero, ((0, 0, 0), (b, k - 1 - b, 0), (0, 0, 0))) for b in range(k)], axis=-1)
    rows = [_pixel_dot(_pixels(g_cols), _pixels(lax.slice_in_dim(xf, a * wp, a * wp + m, axis=1))).reshape(k, o, i)
            for a in range(k)]
    return jnp.concatenate(rows, axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_same_matmul_wgrad(x: jax.Array, w: jax.Array, stride: int = 1, layout: str = "OIHW") -> jax.Array:
    """XLA's 'same' convolution (x [N, H, W, I], w (O, I, k, k), or (k, k, O, I) with ``layout="HWOI"``;
    odd k, ``stride``) whose weight gradient is :func:`conv_weight_grad` (matrix products) instead
    of XLA's convolution backward.

    Values and the input gradient are XLA's; unused cotangents are removed by XLA, so a backward
    pass that only needs the input gradient (a latent search) pays nothing for the weight one.
    """
    return _xla_conv_same(x, w, stride, layout)


def _conv_same_fwd(x, w, stride, layout):
    return _xla_conv_same(x, w, stride, layout), (x, w)


def _conv_same_bwd(stride, layout, res, g):
    x, w = res
    dx = jax.vjp(lambda x_: _xla_conv_same(x_, w, stride, layout), x)[1](g)[0]
    return dx, conv_weight_grad(x, g, _kernel_size(w, layout), stride, layout).astype(w.dtype)


conv_same_matmul_wgrad.defvjp(_conv_same_fwd, _conv_same_bwd)


def _conv_same(x: jax.Array, w: jax.Array, stride: int = 1, layout: str = "OIHW") -> jax.Array:
    """'same' correlation of x [N, H, W, I] with w (O, I, k, k) (``layout="OIHW"``) or (k, k, O, I)
    (``"HWOI"``), odd k.

    ``stride`` s > 1 evaluates it only at rows and columns 0, s, 2s, ... (= the full result
    ``[:, ::s, ::s]``, without computing the rest); H and W must be multiples of s. The weight
    gradient is computed as matrix products (:func:`conv_same_matmul_wgrad`).
    """
    k = _kernel_size(w, layout)
    if k == 1:
        w2 = w[0, 0] if layout == "HWOI" else w[:, :, 0, 0]
        return _pixel_matmul(x[:, ::stride, ::stride], w2)
    _check_stride(x, stride)
    return conv_same_matmul_wgrad(x, w, stride, layout)


def _check_stride(x: jax.Array, stride: int) -> None:
    if x.shape[1] % stride or x.shape[2] % stride:
        raise ValueError(f"stride {stride} does not divide the input size {x.shape[1:3]}")


def _phase_taps(k: int, p: int) -> list[int]:
    # conv_transpose2d (stride 2): out[2m + p] = sum_a x[m - a] w[p + 2a]; window offset u <-> a = n - 1 - u
    n = (k - p + 1) // 2
    return [p + 2 * (n - 1 - u) for u in range(n)]


def _conv_transpose2x_phases(x: jax.Array, w: jax.Array, margin: int = 0) -> list[list[jax.Array]]:
    """Sub-pixel phases of ``conv_transpose2d(x, w, stride=2, padding=0)``, no multiplication by zero.

    ``x`` [N, H, W, I], ``w`` (O, I, k, k) with w[:, :, t] feeding out[2i + t] (upstream passes
    the same tensor to conv_transpose2d as (I, O, k, k)). Returns ``phases[py][px]`` =
    out[:, py::2, px::2] (n_p = ceil((k - p) / 2) taps per axis, so H + n_py - 1 rows), with
    ``margin`` zero rows/columns added on every side.

    Tap t = (ty, tx) feeds phase (ty % 2, tx % 2) shifted by (ty // 2, tx // 2). The taps that
    share a shift are one matrix product of x with their weights side by side (4 + 2 + 2 + 1
    for k = 3); :func:`_place_taps` then sums shifted channel slices of those products into the
    phases.
    """
    k = _transposed_kernel_size(w)
    groups = w if isinstance(w, tuple) else _group_taps(w)
    ys = tuple(_pixel_matmul(x, g) for g in groups)
    p = _place_taps(ys, k, margin)
    return [[p[0], p[1]], [p[2], p[3]]]


def _group_taps(w: jax.Array) -> tuple:
    """(O, I, k, k) -> one (len(group) * O, I) matrix per group of :func:`_tap_groups`: the taps sharing a shift,
    side by side."""
    return tuple(jnp.concatenate([w[:, :, ty, tx] for ty, tx in group], axis=0) for _, group in _tap_groups(w.shape[2]))


def _transposed_kernel_size(w) -> int:
    """k of an (O, I, k, k) kernel, or of its :func:`_group_taps` matrices ((k + 1) // 2 squared groups)."""
    if isinstance(w, tuple):
        return 2 * math.isqrt(len(w)) - 1
    return w.shape[2]


def _tap_groups(k: int) -> tuple:
    """The taps (ty, tx) of a k x k kernel grouped by the shift (a, b) = (ty // 2, tx // 2) they need:
    (((a, b), ((ty, tx), ...)), ...), in the order :func:`_conv_transpose2x_phases` multiplies them."""
    n_shift = (k + 1) // 2
    return tuple(((a, b), tuple((ty, tx) for ty in (2 * a, 2 * a + 1) for tx in (2 * b, 2 * b + 1) if ty < k and tx < k))
                 for a in range(n_shift) for b in range(n_shift))


def _tap_pad(k: int, margin: int, a: int, b: int, py: int, px: int) -> tuple:
    n_taps = [len(_phase_taps(k, p)) for p in range(2)]
    return ((0, 0, 0), (margin + a, margin + n_taps[py] - 1 - a, 0),
            (margin + b, margin + n_taps[px] - 1 - b, 0), (0, 0, 0))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _place_taps(ys: tuple, k: int, margin: int) -> tuple:
    """Phases (p00, p01, p10, p11) = sums of the tap products' channel slices, each zero-padded to its shift.

    ``ys[i]`` [N, H, W, len(group_i) * O] is the product of :func:`_tap_groups` ``(k)``'s i-th group. The VJP
    slices each phase's cotangent back and concatenates the taps along channels: autodiff would turn every
    channel slice into a full-width zero-padded array and sum them, a loop that evaluates every pad for
    every element (~100 ms for one 256² x 4 x 64 cotangent, against a copy's ~10).
    """
    terms: list[list] = [[], [], [], []]
    for y, ((a, b), group) in zip(ys, _tap_groups(k)):
        o = y.shape[-1] // len(group)
        for g, (ty, tx) in enumerate(group):
            py, px = ty % 2, tx % 2
            terms[2 * py + px].append(lax.pad(y[..., g * o:(g + 1) * o], jnp.zeros((), y.dtype),
                                              _tap_pad(k, margin, a, b, py, px)))
    return tuple(functools.reduce(jnp.add, t) for t in terms)


def _place_taps_fwd(ys, k, margin):
    return _place_taps(ys, k, margin), tuple(y.shape for y in ys)


def _place_taps_bwd(k, margin, shapes, cts):
    grads = []
    for (_, h, w, _), ((a, b), group) in zip(shapes, _tap_groups(k)):
        parts = [cts[2 * (ty % 2) + tx % 2][:, margin + a:margin + a + h, margin + b:margin + b + w, :]
                 for ty, tx in group]
        grads.append(jnp.concatenate(parts, axis=-1))
    return (tuple(grads),)


_place_taps.defvjp(_place_taps_fwd, _place_taps_bwd)


def _phase_fir_1d(phases: Sequence[jax.Array], taps: Sequence[float], pad0: int, out_len: int, axis: int,
                  margin: int = 0) -> list[jax.Array]:
    """FIR of an interleaved signal given as its two phases; returns the two phases of the result.

    Signal T[2m + p] = phases[p][margin + m] (zero outside); result
    Z[q] = sum_j T[q + j - pad0] * taps[::-1][j] for q < out_len (upfirdn2d with up=down=1, pad
    (pad0, .)), returned as [Z[0::2], Z[1::2]] without margin on ``axis``.
    """
    kf = list(taps)[::-1]
    result = []
    for e in range(2):
        # Z[2r + e] takes phase (e + j - pad0) % 2 at index r + (e + j - pad0) // 2
        terms = tuple(((e + j - pad0) % 2, margin + (e + j - pad0) // 2, float(t)) for j, t in enumerate(kf))
        result.append(_shift_sum(tuple(phases), terms, (out_len - e + 1) // 2, axis))
    return result


def _interleave(z: Sequence[Sequence[jax.Array]]) -> jax.Array:
    """[[Z00, Z01], [Z10, Z11]] (each [N, h, w, C]) -> [N, 2h, 2w, C] with Z[py][px] at (2i+py, 2j+px)."""
    n, h, w, c = z[0][0].shape
    y = jnp.stack([jnp.stack(row, axis=3) for row in z], axis=2)  # [N, h, 2(py), w, 2(px), C]
    return y.reshape(n, 2 * h, 2 * w, c)


def _upsample_blur_pad(k: int, blur_kernel: Sequence[float]) -> tuple[int, int]:
    # models/stylegan2/model.py ModulatedConv2d(upsample=True): Blur pad after the transposed conv
    p = (len(blur_kernel) - 2) - (k - 1)
    return (p + 1) // 2 + 1, p // 2 + 1


def conv_transpose2x_blur(x: jax.Array, w: jax.Array, blur_kernel: Sequence[float] = (1, 3, 3, 1),
                          out_scale: jax.Array | None = None) -> jax.Array:
    """Upstream upsampling conv: ``Blur(conv_transpose2d(x, w, stride=2))`` with gain 4, NHWC.

    ``x`` [N, H, W, I], ``w`` (O, I, k, k) (odd k; w[:, :, t] feeds out[2i + t]), or its tap groups laid out by
    :func:`frozen_modconv`; ``out_scale`` [N, O]
    optionally multiplies the transposed-conv output per channel (demodulation). Returns
    [N, 2H, 2W, O]. Computed per sub-pixel phase: four small convolutions, the blur applied to
    the phases, one interleave at the end.
    """
    k = _transposed_kernel_size(w)
    n, h, wd, _ = x.shape
    p0, p1 = _upsample_blur_pad(k, blur_kernel)
    kb = len(blur_kernel)
    ho = (2 * h + k - 2) + p0 + p1 - kb + 1
    wo = (2 * wd + k - 2) + p0 + p1 - kb + 1
    if ho % 2 or wo % 2:
        raise ValueError("blur_kernel and kernel size give an odd upsampled size")
    margin = max(0, (p0 + 1) // 2)  # largest backward shift of a phase in _phase_fir_1d
    ph = _conv_transpose2x_phases(x, w, margin)
    if out_scale is not None:
        sc = out_scale[:, None, None, :]
        ph = [[p * sc for p in row] for row in ph]
    ta, tb = _taps(blur_kernel, 4.0)
    cols = [_phase_fir_1d([ph[0][px], ph[1][px]], ta, p0, ho, axis=1, margin=margin) for px in range(2)]
    z = [_phase_fir_1d([cols[0][e], cols[1][e]], tb, p0, wo, axis=2, margin=margin) for e in range(2)]
    return _interleave(z)  # z[e][f]: output rows e::2, columns f::2


class FrozenModConv(NamedTuple):
    """A modulated convolution's weights laid out once, for a generator whose weights are not differentiated
    (:func:`frozen_modconv`): ``kernel`` is ``scale * weight`` as the convolution reads it, ``sq`` (O, I) the
    sum over the taps of its square (the demodulation's input)."""

    kernel: Any
    sq: jax.Array


def frozen_modconv(weight: jax.Array, upsample: bool = False) -> FrozenModConv:
    """``weight`` (1, O, I, k, k) in checkpoint units -> :class:`FrozenModConv` for :func:`modulated_conv2d`'s
    activation formulation: the kernel (k, k, I, O) (HWIO), or (O, I) for k = 1, or with ``upsample`` the
    transposed convolution's tap groups, each (len * O, I).

    The same values the activation formulation derives from ``weight`` on every call (scale, layout copies, the
    squared sums), computed once: a latent search calls the generator hundreds of times with the same weights.
    """
    base = _scaled_kernel(weight)
    k = base.shape[2]
    sq = jnp.sum(base * base, axis=(2, 3))
    if upsample:
        kernel = _group_taps(base)
    elif k == 1:
        kernel = base[:, :, 0, 0]
    else:
        kernel = jnp.transpose(base, (2, 3, 1, 0))
    return FrozenModConv(kernel, sq)


def _scaled_kernel(weight: jax.Array) -> jax.Array:
    """(1, O, I, k, k) in checkpoint units -> (O, I, k, k), upstream ``self.scale * self.weight``."""
    _, _, i, k, _ = weight.shape
    return (1.0 / math.sqrt(i * k * k)) * weight[0]


def _frozen_conv_same(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    # kernel (O, I) for 1x1, else (k, k, I, O); weights frozen: XLA's own convolution and its input gradient
    if kernel.ndim == 2:
        return _pixel_matmul(x[:, ::stride, ::stride], kernel)
    _check_stride(x, stride)
    return _xla_conv_same(x, kernel, stride, "HWIO")


def modulated_conv2d(
    x: jax.Array,
    weight: jax.Array,
    style: jax.Array,
    *,
    demodulate: bool = True,
    upsample: bool = False,
    blur_kernel: Sequence[float] = (1, 3, 3, 1),
    mode: str = "activation",
    stride: int = 1,
) -> jax.Array:
    """Upstream ``ModulatedConv2d.forward`` (after the modulation linear layer) on NHWC.

    ``x`` [N, H, W, I]; ``weight`` (1, O, I, k, k) in checkpoint units, or (activation formulation only) its
    :func:`frozen_modconv` layout; ``style`` [N, I] (the StyleSpace code ``s``). Returns [N, H, W, O], or [N, 2H, 2W, O] with ``upsample``
    (stride-2 transposed conv, then the blur with gain 4). ``stride`` s (not with ``upsample``)
    returns only rows and columns 0, s, 2s, ...: [N, H/s, W/s, O].

    ``mode="weight"`` is the reference formulation: per-sample weights
    ``W' = scale * weight * s``, demodulated by ``rsqrt(sum W'^2 + 1e-8)``, one conv per sample
    (upstream: a grouped conv). ``mode="activation"`` (rosinality's ``fused=False``) scales the
    input by ``s`` and the output by the same demodulation factor, convolving with the shared
    ``scale * weight``: equal mathematically, different float rounding, and its backward needs
    no weight-gradient convolution when only the latents are differentiated.
    """
    if mode not in MODCONV_MODES:
        raise ValueError(f"mode must be one of {MODCONV_MODES}, got {mode!r}")
    if upsample and stride != 1:
        raise ValueError("stride is only supported without upsample")
    if isinstance(weight, FrozenModConv):
        if mode != "activation":
            raise ValueError("frozen (laid-out) weights are for the activation formulation: the weight formulation "
                             "differentiates the weights, so pass them in checkpoint layout")
        return _modulated_activation(x, weight.kernel, weight.sq, style, demodulate, upsample, blur_kernel, stride,
                                     _frozen_conv_same)
    base = _scaled_kernel(weight)

    if mode == "weight":
        if upsample:
            wmod = base[None] * style[:, None, :, None, None]  # (N, O, I, k, k)
            red, o_axis = (2, 3, 4), 1
            op = lambda xi, wi: conv_transpose2x_blur(xi, wi, blur_kernel)  # noqa: E731
        else:
            # tap-major (k, k, O, I): the weight gradient's per-tap products stack into contiguous
            # blocks and the modulation runs along the minor axis (~2% of a fine-tuning step)
            wmod = jnp.transpose(base, (2, 3, 0, 1))[None] * style[:, None, None, None, :]
            red, o_axis = (1, 2, 4), 3
            op = functools.partial(_conv_same, stride=stride, layout="HWOI")
        if demodulate:
            d = lax.rsqrt(jnp.sum(wmod * wmod, axis=red) + 1e-8)  # (N, O)
            wmod = wmod * jnp.expand_dims(d, tuple(ax for ax in range(1, 5) if ax != o_axis))
        if x.shape[0] == 1:
            return op(x, wmod[0])
        return jax.vmap(lambda xi, wi: op(xi[None], wi)[0])(x, wmod)

    return _modulated_activation(x, base, jnp.sum(base * base, axis=(2, 3)), style, demodulate, upsample, blur_kernel,
                                 stride, _conv_same)


def _modulated_activation(x, kernel, sq, style, demodulate, upsample, blur_kernel, stride, conv):
    # sum_{i,kh,kw} (base * s_i)^2 = sum_i s_i^2 * sum_{kh,kw} base^2 (= sq): an (N, I) x (I, O) product
    # instead of materialising the per-sample weights (which the backward pass would keep)
    demod = lax.rsqrt(_dot_t(style * style, sq) + 1e-8) if demodulate else None
    xs = x * style[:, None, None, :]
    if upsample:
        return conv_transpose2x_blur(xs, kernel, blur_kernel, out_scale=demod)
    out = conv(xs, kernel, stride)
    return out * demod[:, None, None, :] if demodulate else out
