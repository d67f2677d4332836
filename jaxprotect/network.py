"""The object :func:`jaxprotect.load_network` returns for an image-to-array network."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax


def device_params(tree: dict) -> dict:
    """Move a nested dict of host (numpy) params to the default device, leaf by leaf, in place; returns ``tree``.

    Each leaf is copied once (``jnp.asarray`` makes two copies of a numpy array on CPU) and the dict's
    reference to the host array is replaced by its device copy at once. When the caller hands over the
    only references (a freshly loaded checkpoint), a load then holds about one copy of the weights plus
    one leaf, instead of the host and device trees side by side.
    """
    for key, value in tree.items():
        tree[key] = device_params(value) if isinstance(value, dict) else jax.device_put(value)
    return tree


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
