"""Random-weight toy networks for trying jaxprotect's API without any checkpoint.

Every method's pure functions run on them exactly as on the real networks (same code path, tiny
sizes, seconds on a laptop), so they serve experiments with the step functions, documentation
examples and tests. Their outputs mean nothing: a toy recogniser recognises nobody.

- :func:`toy_stylegan2`: the real StyleGAN2 generator at a tiny size, channel multiplier 1,
  rosinality's own initialisation (weights N(0, 1) in equalised-lr units, modulation bias 1),
  with noise strengths 0.1 instead of 0 so that the noise maps matter, and stored N(0, 1) noise buffers;
- :func:`toy_clip`: the real CLIP module at a tiny width, weights N(0, 1/fan_in);
- :func:`toy_recogniser`: two strided convolutions and a dense layer, as a
  :class:`~jaxprotect.network.Network` taking [N, S, S, 3] in [-1, 1].
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxprotect.network import Network

__all__ = ["TinyRecogniser", "toy_recogniser", "toy_stylegan2", "toy_clip", "toy_clip2protect_networks"]


class TinyRecogniser(nn.Module):
    """Two strided convs and a dense layer: images [N, S, S, 3] in [-1, 1] -> [N, dim]."""

    dim: int = 32

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3), strides=2)(x))
        x = nn.relu(nn.Conv(16, (3, 3), strides=2)(x))
        return nn.Dense(self.dim)(x.reshape(x.shape[0], -1))


def toy_recogniser(name: str = "toy", size: int = 16, dim: int = 32, seed: int = 0) -> Network:
    """A randomly initialised :class:`TinyRecogniser` taking ``size`` x ``size`` faces, as a Network."""
    module = TinyRecogniser(dim)
    params = jax.jit(module.init)(jax.random.key(seed), jnp.zeros((1, size, size, 3)))["params"]
    return Network(name, module, params, (size, size), (-1.0, 1.0), {"source": "toy (random weights)"})


def _stylegan2_init(key: str, shape, rng) -> np.ndarray:
    if key.endswith("modulation.bias"):
        return np.ones(shape, np.float32)
    if key.endswith("noise.weight"):
        return np.full(shape, 0.1, np.float32)
    if key.endswith("bias"):
        return np.zeros(shape, np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def toy_stylegan2(size: int = 16, seed: int = 0):
    """The real StyleGAN2 generator (:mod:`jaxprotect.models.stylegan2`) at ``size`` px with random weights."""
    from jaxprotect.models.stylegan2 import StyleGAN2Config, buffer_shapes, load_stylegan2, param_shapes

    rng = np.random.default_rng(seed)
    cfg = StyleGAN2Config(size=size, channel_multiplier=1)
    sd = {k: _stylegan2_init(k, s, rng) for k, s in param_shapes(cfg).items()}
    sd.update({k: rng.standard_normal(s).astype(np.float32) for k, s in buffer_shapes(cfg)[1].items()})
    return load_stylegan2(sd, channel_multiplier=1)


def toy_clip(seed: int = 0, width: int = 64, resolution: int = 32):
    """The real CLIP (:mod:`jaxprotect.models.clip`) with two tiny towers and random weights."""
    from jaxprotect.models.clip import CLIP
    from jaxprotect.models.clip_shapes import ClipShapes, build_module

    shapes = ClipShapes(32, resolution, width, 2, 8, 4 * width, 77, 49408, width, 2, 4 * width)
    module = build_module(shapes)
    ids = jnp.zeros((1, 77), jnp.int32)
    pixels = jnp.zeros((1, resolution, resolution, 3))
    variables = jax.jit(lambda k: module.init(k, ids, pixels, jnp.ones_like(ids), jnp.zeros_like(ids),
                                              deterministic=True))(jax.random.key(seed))
    return CLIP(variables["params"], shapes, {"source": "toy (random weights)"})


def toy_clip2protect_networks(size: int = 16, seed: int = 0):
    """CLIP2Protect's :class:`~jaxprotect.methods.clip2protect.pipeline.Networks` from toy networks:
    a ``size`` px generator, a tiny CLIP (text features of "face" / "red lipstick" on 3 templates)
    and four toy recognisers (16 px, FaceNet's 20 px) in the roles of ir152, irse50, facenet and
    mobileface. No LPIPS: stage 1 (fine-tuning) needs ``lpips_apply``/``lpips_params`` set."""
    from jaxprotect.losses.clip_losses import nce_loss_from_features, precompute_text_features
    from jaxprotect.methods.clip2protect.generator import from_stylegan2
    from jaxprotect.methods.clip2protect.networks import clip_vision
    from jaxprotect.methods.clip2protect.pipeline import Networks
    from jaxprotect.recognition import from_network
    from jaxprotect.text.templates import IMAGENET_TEMPLATES

    g = toy_stylegan2(size, seed)
    clip = toy_clip(seed)
    text = precompute_text_features(clip, "face", "red lipstick", IMAGENET_TEMPLATES[:3])
    vision, features = clip_vision(clip, "faithful")
    nets = {n: toy_recogniser(n, 20 if n == "facenet" else 16, seed=seed + i)
            for i, n in enumerate(("ir152", "irse50", "facenet", "mobileface"))}
    return Networks(
        synthesis=from_stylegan2(g), g_params=g.params, lpips_apply=None, lpips_params=None,
        recognisers={n: from_network(net) for n, net in nets.items()}, fr_params={n: net.params for n, net in nets.items()},
        clip_features=features, clip_nce=nce_loss_from_features, clip_params=vision, text=text,
    )
