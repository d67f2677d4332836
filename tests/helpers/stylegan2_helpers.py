"""Small StyleGAN2 state dicts for tests: the golden weight rule applied to a tiny configuration."""
from __future__ import annotations

import numpy as np

from jaxprotect.models.stylegan2 import StyleGAN2Config, buffer_shapes, param_shapes
from helpers.weight_rule import rule_for, rule_weights

SMALL = dict(size=8, style_dim=32, n_mlp=2)


def small_state_dict(seed: int = 0, *, noise: bool = True, kernels: bool = False, **cfg) -> dict[str, np.ndarray]:
    """A ``g_ema``-style state dict for ``StyleGAN2Config(**SMALL | cfg)`` drawn by the golden rule.

    ``noise`` adds the ``noises.noise_i`` buffers, ``kernels`` the FIR ``.kernel`` buffers
    (with their true value, ``make_kernel([1,3,3,1]) * 4``).
    """
    config = StyleGAN2Config(**{**SMALL, **cfg})
    kernel_shapes, noise_shapes = buffer_shapes(config)
    shapes = dict(param_shapes(config))
    if noise:
        shapes.update(noise_shapes)
    keys = list(shapes)
    fake_golden = {
        "keys": keys,
        "shapes": [",".join(str(d) for d in shapes[k]) for k in keys],
        "rules": [rule_for(k, shapes[k], "stylegan2", frozenset()) for k in keys],
        "prelu_keys": [],
        "seed": seed,
        "profile": "stylegan2",
    }
    sd = rule_weights(fake_golden)
    if kernels:
        k1 = np.array([1, 3, 3, 1], np.float32)
        kernel = (np.outer(k1, k1) / 64 * 4).astype(np.float32)
        sd.update({k: kernel.copy() for k in kernel_shapes})
    return sd
