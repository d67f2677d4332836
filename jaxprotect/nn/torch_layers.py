"""Linen layers that hold their parameters in PyTorch's names, shapes and layouts.

Activations are NHWC; weights stay as in the checkpoint (conv ``weight`` is OIHW, linear
``weight`` is (out, in), BatchNorm keeps ``running_mean``/``running_var`` beside ``weight`` and
``bias`` in the ``params`` collection). A converted state dict therefore drops in unchanged.
BatchNorm is always in eval mode: the networks here are pretrained and frozen.

Under ``jit`` the params are arguments, so XLA lays the checkpoint's OIHW and (out, in) weights out
again on every call: 165 ms of copy ops per CLIP2Protect search step for its three recognisers
(summed op time, ``experiments/results/weight_layout.md``).
:func:`compute_layout` does it once instead; :class:`Conv2d` and :class:`Linear` accept either form.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxprotect.checkpoints.state_dict import check_keys, flatten, unflatten

_normal = nn.initializers.normal(0.02)
_zeros = nn.initializers.zeros
_ones = nn.initializers.ones


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class Conv2d(nn.Module):
    """``torch.nn.Conv2d`` on NHWC input: params ``weight`` (O, I/groups, kH, kW), ``bias`` (O,);
    or, after :func:`compute_layout`, ``kernel`` (kH, kW, I/groups, O) instead of ``weight``."""

    in_channels: int
    out_channels: int
    kernel_size: int | Sequence[int]
    stride: int | Sequence[int] = 1
    padding: int | Sequence[int] = 0
    groups: int = 1
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):  # [N, H, W, C_in] -> [N, H', W', C_out]
        kh, kw = _pair(self.kernel_size)
        ph, pw = _pair(self.padding)
        if self.has_variable("params", "kernel"):
            w, layout = self.get_variable("params", "kernel"), "HWIO"
        else:
            w = self.param("weight", _normal, (self.out_channels, self.in_channels // self.groups, kh, kw))
            layout = "OIHW"
        y = lax.conv_general_dilated(
            x,
            w,
            window_strides=_pair(self.stride),
            padding=((ph, ph), (pw, pw)),
            dimension_numbers=("NHWC", layout, "NHWC"),
            feature_group_count=self.groups,
        )
        if self.use_bias:
            y = y + self.param("bias", _zeros, (self.out_channels,))
        return y


class Linear(nn.Module):
    """``torch.nn.Linear``: params ``weight`` (out, in), ``bias`` (out,); or, after
    :func:`compute_layout`, ``kernel`` (in, out) instead of ``weight``."""

    in_features: int
    out_features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):  # [..., in] -> [..., out]
        if self.has_variable("params", "kernel"):
            y = x @ self.get_variable("params", "kernel")
        else:
            y = x @ self.param("weight", _normal, (self.out_features, self.in_features)).T
        if self.use_bias:
            y = y + self.param("bias", _zeros, (self.out_features,))
        return y


class BatchNorm(nn.Module):
    """Eval-mode ``BatchNorm1d/2d`` over the last axis: ``weight``, ``bias``, ``running_mean``, ``running_var``."""

    num_features: int
    eps: float = 1e-5
    affine: bool = True

    @nn.compact
    def __call__(self, x):  # [..., C]
        mean = self.param("running_mean", _zeros, (self.num_features,))
        var = self.param("running_var", _ones, (self.num_features,))
        y = (x - mean) * lax.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.param("weight", _ones, (self.num_features,)) + self.param("bias", _zeros, (self.num_features,))
        return y


class PReLU(nn.Module):
    """``torch.nn.PReLU(num_parameters)``: param ``weight`` (num_parameters,), broadcast over the last axis."""

    num_parameters: int = 1

    @nn.compact
    def __call__(self, x):
        a = self.param("weight", lambda k, s: jnp.full(s, 0.25), (self.num_parameters,))
        return jnp.where(x >= 0, x, a * x)


def compute_layout(params: Mapping) -> dict:
    """``params`` of a network built from these layers, with every :class:`Conv2d` weight as an HWIO
    ``kernel`` and every :class:`Linear` weight as an (in, out) ``kernel``: the layout XLA's CPU
    convolutions and products read directly. Same outputs; apply it once to params that many
    jitted calls share. Other leaves are kept (not copied). A layer is recognised as a dict whose
    keys are ``weight`` (2-D or 4-D) and optionally ``bias``, which BatchNorm and PReLU are not.
    """
    out = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            w = value.get("weight")
            if set(value) <= {"weight", "bias"} and getattr(w, "ndim", 0) in (2, 4):
                kernel = jnp.transpose(w, (2, 3, 1, 0) if w.ndim == 4 else (1, 0))
                value = dict({k: v for k, v in value.items() if k != "weight"}, kernel=kernel)
            else:
                value = compute_layout(value)
        out[key] = value
    return out


def max_pool(x, kernel: int, stride: int, padding: int = 0, ceil_mode: bool = False):
    """``F.max_pool2d`` on NHWC (padding with -inf, optional ceil mode as PyTorch computes it)."""
    n, h, w, c = x.shape

    def extra(size):
        if not ceil_mode:
            return 0
        out = -(-(size + 2 * padding - kernel) // stride) + 1
        if (out - 1) * stride >= size + padding:  # PyTorch drops a last window that starts in the padding
            out -= 1
        return max(0, (out - 1) * stride + kernel - (size + 2 * padding))

    pads = ((0, 0), (padding, padding + extra(h)), (padding, padding + extra(w)), (0, 0))
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, kernel, kernel, 1), (1, stride, stride, 1), pads)


def nchw_flatten(x):
    """Flatten NHWC features in PyTorch's NCHW order ([N, H, W, C] -> [N, C*H*W])."""
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def l2_normalize(x, axis: int = -1, eps: float = 0.0):
    """``x / ||x||`` along ``axis`` (``eps`` added under the square root when given)."""
    return x / jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=True) + eps)


def param_shapes(module: nn.Module, *example_inputs, method=None) -> dict[str, tuple[int, ...]]:
    """``{dotted.key: shape}`` of ``module``'s params, found with ``jax.eval_shape`` (no compute)."""
    variables = jax.eval_shape(
        lambda: module.init(jax.random.key(0), *example_inputs, method=method)
    )
    return {k: tuple(v.shape) for k, v in flatten(variables["params"]).items()}


def params_from_state_dict(state_dict, shapes, *, what: str = "checkpoint") -> dict:
    """Validate a flat state dict against ``shapes`` and nest it as linen params (float32 numpy)."""
    return unflatten(check_keys(state_dict, shapes, what=what))
