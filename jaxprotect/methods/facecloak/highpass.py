"""The high-pass mask (``src/highpass_handler.py`` ``HighpassHandler``).

From the real probe's normalised crop ``x`` [S, S, 3]:
``lowpass = torchvision gaussian_blur(x, kernel_size=23, sigma=3.0)`` (reflect padding, one 23x23
kernel per channel), ``h = x - lowpass``, ``h = (h - mean(h)) / std(h)`` over all elements
(unbiased std), ``filter = (h > 0)``: the pixels (per channel) whose high-frequency content is
above its mean. The high-pass part of a cloak is ``clamp(pert * filter, ±HIGHPASS_MAX)``
(32/255), read out of the (unclipped) perturbation; before the first update it is
``(2/255)·2·(filter - 0.5)``.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["KERNEL_SIZE", "SIGMA", "gaussian_kernel1d", "gaussian_blur", "highpass_filter", "initial_highpass",
           "extract_highpass"]

KERNEL_SIZE = 23
SIGMA = 3.0


def gaussian_kernel1d(kernel_size: int = KERNEL_SIZE, sigma: float = SIGMA) -> np.ndarray:
    """torchvision ``_get_gaussian_kernel1d`` in float32: ``exp(-x²/2σ²)`` on ``linspace(-(k-1)/2, (k-1)/2, k)``, sum 1."""
    half = (kernel_size - 1) * 0.5
    x = np.linspace(-half, half, kernel_size).astype(np.float32)
    pdf = np.exp(np.float32(-0.5) * (x / np.float32(sigma)) ** 2).astype(np.float32)
    return (pdf / pdf.sum(dtype=np.float32)).astype(np.float32)


def gaussian_blur(images, kernel_size: int = KERNEL_SIZE, sigma: float = SIGMA):
    """torchvision ``gaussian_blur`` of [..., H, W, C] float32: reflect-pad ``k//2``, depthwise 2-D convolution."""
    k1 = gaussian_kernel1d(kernel_size, sigma)
    kernel = np.outer(k1, k1).astype(np.float32)  # torch.mm(k_y[:, None], k_x[None, :])
    x = jnp.asarray(images, jnp.float32)
    lead = x.shape[:-3]
    x = x.reshape((-1,) + x.shape[-3:])
    pad = kernel_size // 2
    x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    c = x.shape[-1]
    w = jnp.asarray(np.repeat(kernel[:, :, None, None], c, axis=3))  # HWIO, one kernel per channel
    out = lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                   feature_group_count=c, precision=lax.Precision.HIGHEST)
    return out.reshape(lead + out.shape[1:])


def highpass_filter(crop, kernel_size: int = KERNEL_SIZE, sigma: float = SIGMA):
    """The 0/1 float32 filter [S, S, 3] of a normalised crop [S, S, 3] (see the module docstring)."""
    crop = jnp.asarray(crop, jnp.float32)
    h = crop - gaussian_blur(crop, kernel_size, sigma)
    h = (h - jnp.mean(h)) / jnp.std(h, ddof=1)
    return (h > 0).astype(jnp.float32)


def initial_highpass(filter_):
    """The handler's starting high-pass part ``(2/255)·2·(filter - 0.5)`` (used before any update)."""
    return jnp.float32(2.0 / 255) * 2 * (jnp.asarray(filter_, jnp.float32) - 0.5)


def extract_highpass(perturbation, filter_, highpass_max: float):
    """``extract_and_update_highpass``: ``clamp(pert * filter, ±highpass_max)`` ([S, S, 3])."""
    return jnp.clip(perturbation * filter_, -highpass_max, highpass_max)

