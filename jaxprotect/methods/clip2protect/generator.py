"""The StyleGAN2 synthesis network as CLIP2Protect's stages call it: a batch of photos, each with
its own W+ code and noise maps and (after fine-tuning) possibly its own generator weights.

With one shared set of weights the batch runs as one batched synthesis. With per-photo weights
the photos are either ``vmap``-ed (XLA turns the per-photo convolutions into grouped
convolutions: right on accelerators, 4-5x slower per photo on CPU at 1024) or looped over with
``lax.map`` inside the same compiled program; both compute the same thing. (The pipeline's
"loop" mode instead calls the batch-1 program once per photo.)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
from jax import lax

__all__ = ["Synthesis", "from_stylegan2", "resolve_batching", "noise_resolution"]


def noise_resolution(shape) -> int:
    """Spatial side of a noise map of the given (per-photo) shape ([r, r], [r, r, 1] or [1, r, r, 1])."""
    dims = [d for d in shape if d != 1]
    return int(dims[0]) if dims else 1


def resolve_batching(mode: str) -> str:
    """Inside one compiled program: ``"map"`` stays ``lax.map``, anything else (``"vmap"``, and
    ``"auto"``/``"loop"``, whose photos reach here one at a time) is ``vmap``."""
    return "map" if mode == "map" else "vmap"


@dataclasses.dataclass(frozen=True, eq=False)
class Synthesis:
    """Static description of a synthesis network.

    ``apply(params, wplus, noise, remat, output_stride=1, modconv=None)``: wplus [N, n_latent, 512],
    ``noise`` a list of arrays [N, *noise_shapes[i]] -> raw images [N, size, size, 3] NHWC (about
    [-1, 1]), or only every ``output_stride``-th row and column of them; ``modconv`` overrides the
    generator's modulated-convolution formulation (see :func:`~jaxprotect.models.stylegan2_ops.modulated_conv2d`).
    ``noise_shapes``: per-photo noise map shapes (no batch axis), coarse to fine.
    ``frozen_layout(params) -> params``: the weights laid out once for calls that do not differentiate them
    (the search); ``apply`` takes either form in the default formulation (None: no such layout).
    """

    apply: Callable
    noise_shapes: tuple
    size: int
    n_latent: int
    frozen_layout: Callable | None = None

    def images(self, params, wplus, noise, *, per_photo_params: bool, batching: str = "map", remat: bool = False,
               output_stride: int = 1, modconv: str | None = None):
        """Raw images [B, size, size, 3] for a batch: ``wplus`` [B, n_latent, 512], ``noise`` a list
        of [B, *shape]; ``params`` shared (``per_photo_params=False``) or with a leading B axis.
        ``batching`` ("vmap"/"map") only matters for per-photo params. ``output_stride`` s > 1:
        only pixels (s*i, s*j), [B, size/s, size/s, 3]. ``modconv``: the modulated-convolution
        formulation for this call (None: the generator's own)."""
        if not per_photo_params:
            return self.apply(params, wplus, list(noise), remat, output_stride, modconv)

        def one(p, w, n):
            return self.apply(p, w[None], [m[None] for m in n], remat, output_stride, modconv)[0]

        if resolve_batching(batching) == "vmap":
            return jax.vmap(one)(params, wplus, list(noise))
        return lax.map(lambda args: one(*args), (params, wplus, list(noise)))

    def noise_resolutions(self) -> tuple[int, ...]:
        """Side of each noise map, in order."""
        return tuple(noise_resolution(s) for s in self.noise_shapes)


def from_stylegan2(g: Any) -> Synthesis:
    """The :class:`Synthesis` of a loaded :mod:`jaxprotect.models.stylegan2` generator ``g``."""
    shapes = tuple(tuple(int(d) for d in s) for s in g.noise_shapes)
    if shapes and len(shapes[0]) == 4 and shapes[0][0] == 1:  # stored with a batch axis of 1
        shapes = tuple(s[1:] for s in shapes)

    def apply(params, wplus, noise, remat=False, output_stride=1, modconv=None):
        return g.synthesis_apply(params, wplus, noise, remat=remat, output_stride=output_stride, modconv=modconv)

    return Synthesis(apply=apply, noise_shapes=shapes, size=int(g.size), n_latent=int(g.n_latent),
                     frozen_layout=g.frozen_layout)
