"""The object :func:`jaxprotect.load_network` returns for an image-to-array network."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax


@dataclasses.dataclass(frozen=True)
class ModuleApply:
    """``f(params, images, **kwargs) = module.apply({"params": params}, images, **kwargs)``: a network's
    pure form holding only its (hashable) module, not its params; equal for equal modules."""

    module: nn.Module

    def __call__(self, params, images, **kwargs):
        return self.module.apply({"params": params}, images, **kwargs)


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

    @property
    def apply_fn(self) -> ModuleApply:
        """:meth:`apply` as a function that does not keep this object (and its params) alive."""
        return ModuleApply(self.module)

    @functools.cached_property
    def _jitted(self):
        return jax.jit(self.apply)

    def __call__(self, images):
        """``apply(self.params, images)``, jit-compiled."""
        return self._jitted(self.params, images)
