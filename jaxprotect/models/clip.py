"""OpenAI CLIP (ViT image tower + text transformer) as transformers' linen ``FlaxCLIPModule``.

The network is the Flax CLIP of transformers 4.57 (never the ``[flax]`` extra, never the hub):
its config is built from the checkpoint's shapes (:class:`ClipShapes`), so ViT-B/32 and the
tiny configurations of the tests share every line. Params are the ``FlaxCLIPModule`` tree
(``vision_model``, ``text_model``, ``visual_projection``, ``text_projection``, ``logit_scale``);
:mod:`jaxprotect.models.clip_convert` turns OpenAI, TorchScript and HF PyTorch checkpoints into
it. The pure functions :func:`image_apply` / :func:`text_apply` read the configuration off the
params' shapes, so they need nothing but ``params``.

Numerics follow openai/CLIP ``clip/model.py`` ``encode_image`` / ``encode_text``: QuickGELU, LayerNorm
eps 1e-5, causal text attention, text features taken at ``argmax(token id)`` (the EOT token),
features returned unnormalised.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprotect.network import device_params
from jaxprotect.models.clip_shapes import (
    VIT_B32,
    ClipShapes,
    build_module,
    flax_param_shapes,
    shapes_of_params,
)

__all__ = [
    "CLIP",
    "ClipShapes",
    "VIT_B32",
    "load_clip",
    "image_apply",
    "text_apply",
    "logits_apply",
    "build_module",
    "shapes_of_params",
    "flax_param_shapes",
    "OPENAI_CACHE_PATH",
    "OPENAI_VIT_B32_URL",
]

OPENAI_VIT_B32_URL = (
    "https://openaipublic.azureedge.net/clip/models/"
    "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"
)
OPENAI_CACHE_PATH = Path("~/.cache/clip/ViT-B-32.pt")  # where openai/CLIP's clip.load keeps it
def _image_features(module, pixel_values):
    pooled = module.vision_model(pixel_values=pixel_values, deterministic=True, return_dict=False)[1]
    return module.visual_projection(pooled)


def _text_features(module, input_ids):
    positions = jnp.broadcast_to(jnp.arange(input_ids.shape[-1], dtype=jnp.int32), input_ids.shape)
    # attention_mask None -> causal mask only, as OpenAI (its padding tokens are never masked)
    pooled = module.text_model(
        input_ids=input_ids, attention_mask=None, position_ids=positions, deterministic=True, return_dict=False
    )[1]
    return module.text_projection(pooled)


def image_apply(params, images):
    """OpenAI ``encode_image``: images [N, R, R, 3] float32 NHWC, ALREADY CLIP-normalised
    (``(x01 - mean) / std``, R = 224 for ViT-B/32) -> unnormalised image features [N, embed_dim]."""
    module = build_module(shapes_of_params(params))
    return module.apply({"params": params}, images, method=_image_features)


def text_apply(params, token_ids):
    """OpenAI ``encode_text``: token ids [N, L] int (L <= context length; ``clip.tokenize`` rows)
    -> unnormalised text features [N, embed_dim], taken at ``argmax(ids)`` (the EOT token)."""
    module = build_module(shapes_of_params(params))
    return module.apply({"params": params}, jnp.asarray(token_ids, jnp.int32), method=_text_features)


def logits_apply(params, images, token_ids):
    """OpenAI ``CLIP.forward``'s ``logits_per_image`` [N_img, N_txt]: ``exp(logit_scale)`` x cosine.

    ``images`` as in :func:`image_apply`, ``token_ids`` as in :func:`text_apply`.
    """
    img = image_apply(params, images)
    txt = text_apply(params, token_ids)
    img = img / jnp.linalg.norm(img, axis=-1, keepdims=True)
    txt = txt / jnp.linalg.norm(txt, axis=-1, keepdims=True)
    return jnp.exp(params["logit_scale"]) * img @ txt.T


_image_apply_jit = jax.jit(image_apply)
_text_apply_jit = jax.jit(text_apply)
_logits_apply_jit = jax.jit(logits_apply)


def _bucket(length: int, context: int, step: int = 8) -> int:
    return min(context, -(-length // step) * step)


@dataclasses.dataclass(eq=False)
class CLIP:
    """A CLIP network bound to converted params.

    ``image_apply(params, images)`` / ``text_apply(params, ids)`` are the pure forms (compose
    jit/vmap/grad around them). ``encode_image`` / ``encode_text`` run them jitted with
    ``self.params``; ``tokenize`` is OpenAI's ``clip.tokenize`` (offline vocabulary).
    ``info`` says where the weights came from and which checkpoint keys were ignored.
    """

    params: Any
    shapes: ClipShapes
    info: dict = dataclasses.field(default_factory=dict)
    name: str = "clip"

    @property
    def module(self):
        """The transformers ``FlaxCLIPModule`` of these shapes."""
        return build_module(self.shapes)

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.shapes.image_resolution, self.shapes.image_resolution)

    @property
    def context_length(self) -> int:
        return self.shapes.context_length

    @staticmethod
    def image_apply(params, images):
        """See :func:`image_apply`."""
        return image_apply(params, images)

    @staticmethod
    def text_apply(params, token_ids):
        """See :func:`text_apply`."""
        return text_apply(params, token_ids)

    def encode_image(self, images):
        """Images [N, R, R, 3] NHWC, CLIP mean/std-normalised -> unnormalised features [N, embed_dim]."""
        return _image_apply_jit(self.params, jnp.asarray(images, jnp.float32))

    def encode_text(self, token_ids):
        """Concrete token ids [N, context_length] (numpy/jax ints) -> unnormalised features [N, embed_dim].

        Causal attention makes the features at the EOT position independent of the tokens after it,
        so the rows are cut after the last EOT (rounded up to a multiple of 8 to limit recompiles)
        before the transformer runs: same result, several times less work for short prompts.
        """
        ids = np.asarray(token_ids)
        if ids.ndim != 2:
            raise ValueError(f"token_ids must be [N, L], got shape {ids.shape}")
        ids = ids[:, : _bucket(int(ids.argmax(axis=-1).max()) + 1, ids.shape[1])]
        return _text_apply_jit(self.params, ids.astype(np.int32))

    def tokenize(self, strings, truncate: bool = False) -> np.ndarray:
        """OpenAI ``clip.tokenize``: str or list of str -> np.int64 [N, context_length]."""
        from jaxprotect.text.clip_tokenizer import tokenize

        return tokenize(strings, context_length=self.context_length, truncate=truncate)

    def logits(self, images, token_ids):
        """``logits_per_image`` [N_img, N_txt] for normalised images and token ids (see :func:`logits_apply`)."""
        return _logits_apply_jit(self.params, jnp.asarray(images, jnp.float32), np.asarray(token_ids, np.int32))


def load_clip(checkpoint=None, *, cache=None) -> CLIP:
    """Load CLIP (ViT image tower) from any supported checkpoint.

    ``checkpoint``: OpenAI's TorchScript archive (``ViT-B-32.pt``, read without running its code),
    an OpenAI-layout state dict (``.pt``/``.pth``/mapping), an HF PyTorch ``CLIPModel`` state dict
    (``.bin``/``.safetensors``/mapping), or the ``.npz``/``.safetensors`` cache written by
    ``jaxprotect convert clip IN OUT`` (flattened :attr:`CLIP.params`). fp16 weights become float32.
    ``None`` uses ``~/.cache/clip/ViT-B-32.pt`` (where ``clip.load`` saves it) if present; the
    weights are not shipped with jaxprotect. ``cache``: a ``.npz``/``.safetensors`` path; if it
    exists it is loaded instead of ``checkpoint``, otherwise the converted params are written there.
    Returns a :class:`CLIP`.
    """
    from jaxprotect.checkpoints.state_dict import flatten, load_state_dict, save_flat, unflatten
    from jaxprotect.models.clip_convert import convert_clip_state_dict

    if cache is not None and os.path.exists(cache):
        source = cache
    elif checkpoint is None:
        default = OPENAI_CACHE_PATH.expanduser()
        if not default.exists():
            raise FileNotFoundError(
                "no CLIP checkpoint given and none at ~/.cache/clip/ViT-B-32.pt. jaxprotect does not ship CLIP "
                f"weights: get OpenAI's ViT-B-32.pt (openai/CLIP clip.load('ViT-B/32') saves it there; URL "
                f"{OPENAI_VIT_B32_URL}) and pass its path, or a cache written by `jaxprotect convert clip IN OUT`"
            )
        source = default
    else:
        source = checkpoint
    state = load_state_dict(source)
    shapes, flat, report = convert_clip_state_dict(state)
    del state
    tree = unflatten(flat)
    del flat  # the tree holds the only references: each host array goes once moved
    params = device_params(tree)
    if cache is not None and source is not cache:
        save_flat(cache, flatten(params))
    info = {"source": "mapping" if isinstance(source, Mapping) else os.fspath(source), **report}
    return CLIP(params=params, shapes=shapes, info=info)
