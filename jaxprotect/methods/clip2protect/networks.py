"""Assemble :class:`pipeline.Networks` from loaded jaxprotect networks."""
from __future__ import annotations

from jaxprotect.methods.clip2protect.config import FR_MODELS, Clip2ProtectConfig
from jaxprotect.methods.clip2protect.generator import from_stylegan2
from jaxprotect.methods.clip2protect.pipeline import Networks
from jaxprotect.methods.clip2protect.search import Recogniser

__all__ = ["build_networks", "load_networks"]


def build_networks(generator, lpips, clip, recognisers: dict, cfg: Clip2ProtectConfig, e4e=None) -> Networks:
    """``generator``: :class:`~jaxprotect.models.stylegan2.StyleGAN2`; ``lpips``: LPIPS-VGG
    (:class:`~jaxprotect.models.lpips.LPIPS`, may be None with ``skip_finetune``); ``clip``:
    :class:`~jaxprotect.models.clip.CLIP`; ``recognisers``: {name: :class:`~jaxprotect.network.Network`}
    for ir152, irse50, facenet, mobileface; ``e4e``: :class:`~jaxprotect.models.e4e.E4E` or None.
    The text features of (``cfg.source_text``, ``cfg.prompt``) are computed here, once."""
    from jaxprotect.losses.clip_losses import clip_image_features, nce_loss_from_features, precompute_text_features

    missing = [m for m in FR_MODELS if m not in recognisers]
    if missing:
        raise ValueError(f"CLIP2Protect needs all four recognisers; missing: {', '.join(missing)}")
    preprocess = cfg.clip_preprocess

    def clip_features(params, images01):
        return clip_image_features(params, images01, preprocess)

    recs = {n: Recogniser(n, net.apply, int(net.input_size[0])) for n, net in recognisers.items()}
    return Networks(
        synthesis=from_stylegan2(generator),
        g_params=generator.params,
        lpips_apply=lpips.apply if lpips is not None else None,
        lpips_params=lpips.params if lpips is not None else None,
        recognisers=recs,
        fr_params={n: net.params for n, net in recognisers.items()},
        clip_features=clip_features,
        clip_nce=nce_loss_from_features,
        clip_params=clip.params,
        text=precompute_text_features(clip, cfg.source_text, cfg.prompt),
        e4e=e4e,
    )


def load_networks(paths: dict, cfg: Clip2ProtectConfig) -> Networks:
    """Load every checkpoint of ``paths`` ({kind: path}, kinds as :mod:`jaxprotect.registry`
    names) and assemble :class:`Networks`."""
    from jaxprotect.registry import load_network

    g = load_network("stylegan2", paths["stylegan2"])
    e4e = load_network("e4e", paths["e4e"])
    lpips = None if cfg.skip_finetune else load_network("lpips_vgg", paths["lpips_vgg"])
    clip = load_network("clip", paths["clip"])
    recs = {n: load_network(n, paths[n]) for n in FR_MODELS}
    return build_networks(g, lpips, clip, recs, cfg, e4e=e4e)
