"""Shared by the CLIP tests: tiny random CLIP state dicts and the full-size golden CLIP, built once."""
from __future__ import annotations

import functools

import numpy as np

from helpers.golden import load_golden
from helpers.weight_rule import rule_weights

TINY = dict(embed_dim=32, image_resolution=32, vision_width=64, vision_layers=2, vision_patch_size=8,
            context_length=77, vocab_size=49408, text_width=64, text_layers=2)


def tiny_shapes():
    from jaxprotect.models.clip import ClipShapes

    return ClipShapes(TINY["embed_dim"], TINY["image_resolution"], TINY["vision_width"], TINY["vision_layers"],
                      TINY["vision_patch_size"], 4 * TINY["vision_width"], TINY["context_length"],
                      TINY["vocab_size"], TINY["text_width"], TINY["text_layers"], 4 * TINY["text_width"])


def tiny_openai_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    """A random OpenAI-layout state dict for the tiny configuration (scales like the golden rule)."""
    from jaxprotect.models.clip_convert import openai_key_shapes

    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in openai_key_shapes(tiny_shapes()).items():
        if key == "logit_scale":
            out[key] = np.array(np.log(1 / 0.07), np.float32)
        elif key.endswith(("bias", "_bias")):
            out[key] = 0.1 * rng.standard_normal(shape)
        elif len(shape) == 1:
            out[key] = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            out[key] = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
        out[key] = np.asarray(out[key], np.float32)
    return out


def golden_state_dict(name: str) -> dict[str, np.ndarray]:
    """OpenAI-layout ViT-B/32 weights of a CLIP golden by the documented rule (+ its constant logit_scale)."""
    g = load_golden(name)
    sd = rule_weights(g)
    sd["logit_scale"] = np.asarray(g["logit_scale"], np.float32)  # rule 'const': stored, not drawn
    return sd


@functools.lru_cache(maxsize=1)
def golden_clip():
    """ViT-B/32 with the seed-32 golden weights, converted by ``load_clip`` (both CLIP goldens share them)."""
    from jaxprotect.models.clip import load_clip

    return load_clip(golden_state_dict("clip_vitb32.npz"))
