"""A small CLIP2Protect for the tests: the real StyleGAN2, LPIPS-VGG, CLIP and NCE-loss code on tiny
configurations with rule/random weights, and tiny random recognisers in the four roles.

- StyleGAN2: ``Generator(size, 512, 8, channel_multiplier=1)`` with weights drawn by the golden
  StyleGAN2 rule (``weight_rule``: N(0, 1) equalised weights, modulation bias 1 + ...), loaded
  through ``load_stylegan2`` (the converter users run);
- LPIPS: the real ``LPIPSModule('vgg')`` with randomly initialised trunk and heads;
- CLIP: the tiny OpenAI-layout configuration of the CLIP tests, through ``load_clip``, and the
  real ``nce_loss`` pieces with text features from ``precompute_text_features`` on 3 templates;
- recognisers: :class:`tiny_recogniser.TinyRecogniser` at two input sizes (16 for three roles,
  20 for "facenet", standing in for 112/160).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from helpers.weight_rule import draw, rule_for

SIZE = 8
FR_SIZES = {"ir152": 16, "irse50": 16, "facenet": 20, "mobileface": 16}


def stylegan2_rule_state_dict(size: int, channel_multiplier: int = 1, seed: int = 0) -> dict:
    """``g_ema`` state dict of ``Generator(size, 512, 8, channel_multiplier)`` by the golden rule."""
    from jaxprotect.models.stylegan2 import StyleGAN2Config, param_shapes

    cfg = StyleGAN2Config(size=size, channel_multiplier=channel_multiplier)
    rng = np.random.default_rng(seed)
    return {k: draw(rule_for(k, s, "stylegan2", frozenset()), s, rng) for k, s in param_shapes(cfg).items()}


@functools.lru_cache(maxsize=4)
def small_networks(size: int = SIZE, text_templates: int = 3):
    """(Networks, generator) of the small configuration (built once per process)."""
    from helpers.clip_helpers import tiny_openai_state_dict
    from helpers.tiny_recogniser import TinyRecogniser

    from jaxprotect.losses.clip_losses import nce_loss_from_features, precompute_text_features
    from jaxprotect.methods.clip2protect.generator import from_stylegan2
    from jaxprotect.methods.clip2protect.networks import clip_vision
    from jaxprotect.methods.clip2protect.pipeline import Networks
    from jaxprotect.recognition import Recogniser
    from jaxprotect.models.clip import load_clip
    from jaxprotect.models.lpips import LPIPSModule
    from jaxprotect.models.stylegan2 import load_stylegan2
    from jaxprotect.text.templates import IMAGENET_TEMPLATES

    g = load_stylegan2(stylegan2_rule_state_dict(size), channel_multiplier=1)
    lp = LPIPSModule("vgg")
    x16 = jnp.zeros((1, 16, 16, 3))
    lp_params = random_params(lambda: lp.init(jax.random.key(0), x16, x16)["params"], seed=7, positive="lin")
    clip = load_clip(tiny_openai_state_dict(3))
    text = precompute_text_features(clip, "face", "red lipstick", IMAGENET_TEMPLATES[:text_templates])
    module = TinyRecogniser(32)
    recs, fr_params = {}, {}
    for i, (name, s) in enumerate(FR_SIZES.items()):
        fr_params[name] = random_params(lambda s=s: module.init(jax.random.key(0), jnp.zeros((1, s, s, 3)))["params"],
                                        seed=100 + i)
        recs[name] = Recogniser(name, _tiny_apply(module), (s, s))

    def lpips_apply(params, a, b):
        return lp.apply({"params": params}, a, b)

    vision, clip_features = clip_vision(clip, "faithful")

    nets = Networks(
        synthesis=from_stylegan2(g), g_params=g.params, lpips_apply=lpips_apply, lpips_params=lp_params,
        recognisers=recs, fr_params=fr_params, clip_features=clip_features, clip_nce=nce_loss_from_features,
        clip_params=vision, text=text, e4e=None,
    )
    return nets, g


def small_config(*, finetune_steps: int = 0, steps: int = 6, execution=None, **search):
    """The CLIP2Protect config of the small configuration: the 8 px generator has 4 W+ rows and
    noise maps of side 4, 8, 8, so rows 0..1 are frozen (upstream 0..7 of 18) and maps of side >= 8
    stay fixed (upstream >= 512); fine-tuning compares at 16 px (upstream 256). ``finetune_steps``
    0 skips stage 1; ``search`` overrides :class:`SearchConfig` fields."""
    from jaxprotect.methods.clip2protect.config import (
        Clip2ProtectConfig,
        ExecutionConfig,
        FinetuneConfig,
        SearchConfig,
    )

    sc = dict(frozen_rows=2, noise_max_res=8)
    sc.update(search)
    return Clip2ProtectConfig(FinetuneConfig(steps=finetune_steps, size=16, skip=finetune_steps == 0),
                              SearchConfig(steps=steps, **sc), execution or ExecutionConfig())


def with_search(cfg, **fields):
    """``cfg`` with ``fields`` of its search section replaced."""
    import dataclasses

    return dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, **fields))


def with_finetune(cfg, **fields):
    """``cfg`` with ``fields`` of its fine-tuning section replaced."""
    import dataclasses

    return dataclasses.replace(cfg, finetune=dataclasses.replace(cfg.finetune, **fields))


def photo_keys(seed: int, indices):
    """Per-photo keys ``fold_in(key(seed), i)`` (the tests' stand-in for content keys)."""
    return jnp.stack([jax.random.fold_in(jax.random.key(seed), int(i)) for i in indices])


def random_params(init, seed: int, positive: str | None = None):
    """Params with the shapes ``init()`` would make (found with ``eval_shape``, so nothing runs):
    kernels N(0, 1/fan_in), biases 0.1 N(0, 1); leaves under a key starting with ``positive`` are
    made non-negative (LPIPS heads)."""
    shapes = jax.eval_shape(init)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        keys = [str(getattr(p, "key", p)) for p in path]
        shape = leaf.shape
        if keys[-1] == "bias" or len(shape) <= 1:
            v = 0.1 * rng.standard_normal(shape)
        else:
            v = rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]) if keys[-1] == "kernel" else np.prod(shape[1:]))
        if positive and any(k.startswith(positive) for k in keys):
            v = np.abs(v)
        return jnp.asarray(v, jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def _tiny_apply(module):
    def apply(params, images):
        return module.apply({"params": params}, images)

    return apply


def small_photos(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """n smooth random RGB uint8 photos [n, size, size, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        f = rng.uniform(1, 3, (3, 2))
        ph = rng.uniform(0, 6.3, 3)
        img = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (f[c, 0] * xx + f[c, 1] * yy) + ph[c]) for c in range(3)], -1)
        out.append(np.clip(img * 255 + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8))
    return np.stack(out)


def small_inputs(nets, n: int, seed: int = 0):
    """(photos, boxes, w0, target_emb, eval_emb) for n photos of the small configuration."""
    from jaxprotect.methods.clip2protect.pipeline import face_embeddings

    size = nets.synthesis.size
    photos = small_photos(n, size, seed)
    boxes = np.array([[1.5 + 0.5 * (i % 3), 1.5, size - 1.5, size - 1.5 - 0.5 * (i % 2)] for i in range(n)], np.float32)
    rng = np.random.default_rng(seed + 1)
    w0 = rng.standard_normal((n, nets.synthesis.n_latent, 512)).astype(np.float32)
    target = small_photos(1, size, seed + 99)[0]
    tbox = (1.0, 2.0, size - 1.0, size - 2.0)
    temb = face_embeddings(nets, target, tbox, 0)
    target_emb = {k: np.repeat(np.asarray(v)[None], n, 0) for k, v in temb.items()}
    eval_emb = np.repeat(np.asarray(temb["mobileface"])[None], n, 0)
    return photos, boxes, w0, target_emb, eval_emb


def fullsize_checkpoints(folder, size: int = 256):
    """``jaxprotect convert``-style caches {kind}.npz in ``folder`` for the CLI: StyleGAN2 at ``size``
    (rule weights, channel multiplier 2), e4e with that many styles, LPIPS-VGG, the tiny CLIP and the
    four recognisers at full size, all with golden-rule weights and written through their loaders."""
    from pathlib import Path

    from helpers.clip_helpers import tiny_openai_state_dict
    from helpers.golden import load_golden
    from helpers.weight_rule import rule_weights

    from jaxprotect.checkpoints.state_dict import flatten, save_flat
    from jaxprotect.models.e4e import n_styles_for
    from jaxprotect.registry import load_network

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = n_styles_for(size)
    e4e = rule_weights(load_golden("e4e_1024.npz"))
    e4e = {k: v for k, v in e4e.items() if not (k.startswith("styles.") and int(k.split(".")[1]) >= n)}
    e4e["latent_avg"] = e4e["latent_avg"][:n]
    sources = {
        "stylegan2": stylegan2_rule_state_dict(size, 2, seed=size),
        "e4e": e4e,
        "lpips_vgg": rule_weights(load_golden("lpips_vgg.npz")),
        "clip": tiny_openai_state_dict(3),
        **{k: rule_weights(load_golden(f"{k}.npz")) for k in ("ir152", "irse50", "facenet", "mobileface")},
    }
    for kind, sd in sources.items():
        net = load_network(kind, sd)
        save_flat(str(folder / f"{kind}.npz"), net.to_flat() if hasattr(net, "to_flat") else flatten(net.params))
    return folder
