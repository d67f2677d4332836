"""The object :func:`jaxprotect.load_network` returns for an image-to-array network."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax


@dataclasses.dataclass(eq=False)
class Network:
    """A pretrained linen module bound to its converted params.

    ``apply(params, images)`` is the pure form (compose ``jit``/``vmap``/``grad`` around it);
    calling the object runs a jitted ``apply`` with the stored params. ``input_size`` is (H, W);
    ``input_range`` and ``info`` document what the images must look like and where the weights
    came from.
    """

    name: str
    module: nn.Module
    params: Any
    input_size: tuple[int, int]
    input_range: tuple[float, float] = (-1.0, 1.0)
    info: dict = dataclasses.field(default_factory=dict)

    def apply(self, params, images, **kwargs):
        """Run the module: ``images`` [N, H, W, 3] float32 NHWC in ``input_range``."""
        return self.module.apply({"params": params}, images, **kwargs)

    @functools.cached_property
    def _jitted(self):
        return jax.jit(self.apply)

    def __call__(self, images):
        """``apply(self.params, images)``, jit-compiled."""
        return self._jitted(self.params, images)
