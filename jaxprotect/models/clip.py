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
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # jaxprotect never reaches the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from transformers import CLIPConfig  # noqa: E402
from transformers.models.clip.modeling_flax_clip import FlaxCLIPModule  # noqa: E402

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
_HEAD_WIDTH = 64  # OpenAI's build_model: heads = width // 64 in both towers


@dataclasses.dataclass(frozen=True)
class ClipShapes:
    """Everything a CLIP ViT checkpoint's shapes determine (OpenAI ``build_model``'s inference).

    ViT-B/32: ``ClipShapes(512, 224, 768, 12, 32, 3072, 77, 49408, 512, 12, 2048)``.
    """

    embed_dim: int
    image_resolution: int
    vision_width: int
    vision_layers: int
    vision_patch_size: int
    vision_mlp: int
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_mlp: int

    @property
    def vision_heads(self) -> int:
        return max(1, self.vision_width // _HEAD_WIDTH)

    @property
    def text_heads(self) -> int:
        return max(1, self.text_width // _HEAD_WIDTH)

    @property
    def grid(self) -> int:
        return self.image_resolution // self.vision_patch_size

    def to_config(self) -> CLIPConfig:
        """The transformers ``CLIPConfig`` of this network."""
        text = dict(
            vocab_size=self.vocab_size,
            hidden_size=self.text_width,
            intermediate_size=self.text_mlp,
            num_hidden_layers=self.text_layers,
            num_attention_heads=self.text_heads,
            max_position_embeddings=self.context_length,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
            projection_dim=self.embed_dim,
            # eos_token_id == 2 selects transformers' legacy pooling at argmax(token id), which is
            # exactly OpenAI's encode_text (49407 would pool at the first 49407 instead).
            eos_token_id=2,
        )
        vision = dict(
            hidden_size=self.vision_width,
            intermediate_size=self.vision_mlp,
            num_hidden_layers=self.vision_layers,
            num_attention_heads=self.vision_heads,
            image_size=self.image_resolution,
            patch_size=self.vision_patch_size,
            num_channels=3,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
            projection_dim=self.embed_dim,
        )
        return CLIPConfig(text_config=text, vision_config=vision, projection_dim=self.embed_dim)


VIT_B32 = ClipShapes(512, 224, 768, 12, 32, 3072, 77, 49408, 512, 12, 2048)


@functools.lru_cache(maxsize=16)
def build_module(shapes: ClipShapes) -> FlaxCLIPModule:
    """The (stateless) linen ``FlaxCLIPModule`` for ``shapes``; one instance per configuration."""
    return FlaxCLIPModule(shapes.to_config(), dtype=jnp.float32)


def flax_param_shapes(s: ClipShapes) -> dict[str, tuple[int, ...]]:
    """``{dotted key: shape}`` of ``FlaxCLIPModule``'s params for ``s`` (checked against eval_shape in tests)."""
    out: dict[str, tuple[int, ...]] = {}

    def tower(prefix: str, width: int, mlp: int, layers: int):
        for i in range(layers):
            p = f"{prefix}.encoder.layers.{i}"
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                out[f"{p}.self_attn.{proj}.kernel"] = (width, width)
                out[f"{p}.self_attn.{proj}.bias"] = (width,)
            for ln in ("layer_norm1", "layer_norm2"):
                out[f"{p}.{ln}.scale"] = (width,)
                out[f"{p}.{ln}.bias"] = (width,)
            out[f"{p}.mlp.fc1.kernel"] = (width, mlp)
            out[f"{p}.mlp.fc1.bias"] = (mlp,)
            out[f"{p}.mlp.fc2.kernel"] = (mlp, width)
            out[f"{p}.mlp.fc2.bias"] = (width,)

    wt, wv = s.text_width, s.vision_width
    out["text_model.embeddings.token_embedding.embedding"] = (s.vocab_size, wt)
    out["text_model.embeddings.position_embedding.embedding"] = (s.context_length, wt)
    tower("text_model", wt, s.text_mlp, s.text_layers)
    out["text_model.final_layer_norm.scale"] = (wt,)
    out["text_model.final_layer_norm.bias"] = (wt,)
    out["vision_model.embeddings.class_embedding"] = (wv,)
    out["vision_model.embeddings.patch_embedding.kernel"] = (s.vision_patch_size, s.vision_patch_size, 3, wv)
    out["vision_model.embeddings.position_embedding.embedding"] = (s.grid**2 + 1, wv)
    out["vision_model.pre_layrnorm.scale"] = (wv,)
    out["vision_model.pre_layrnorm.bias"] = (wv,)
    tower("vision_model", wv, s.vision_mlp, s.vision_layers)
    out["vision_model.post_layernorm.scale"] = (wv,)
    out["vision_model.post_layernorm.bias"] = (wv,)
    out["visual_projection.kernel"] = (wv, s.embed_dim)
    out["text_projection.kernel"] = (wt, s.embed_dim)
    out["logit_scale"] = ()
    return out


def _count_layers(keys, prefix: str) -> int:
    idx = {int(k[len(prefix):].split(".")[0]) for k in keys if k.startswith(prefix)}
    return max(idx) + 1 if idx else 0


def shapes_of_params(params) -> ClipShapes:
    """:class:`ClipShapes` read off a ``FlaxCLIPModule`` params tree (static shapes: works under jit)."""
    v, t = params["vision_model"], params["text_model"]
    patch = v["embeddings"]["patch_embedding"]["kernel"].shape  # (p, p, 3, width)
    n_pos = v["embeddings"]["position_embedding"]["embedding"].shape[0]
    tok = t["embeddings"]["token_embedding"]["embedding"].shape
    return ClipShapes(
        embed_dim=params["text_projection"]["kernel"].shape[1],
        image_resolution=patch[0] * round((n_pos - 1) ** 0.5),
        vision_width=patch[3],
        vision_layers=len(v["encoder"]["layers"]),
        vision_patch_size=patch[0],
        vision_mlp=v["encoder"]["layers"]["0"]["mlp"]["fc1"]["kernel"].shape[1],
        context_length=t["embeddings"]["position_embedding"]["embedding"].shape[0],
        vocab_size=tok[0],
        text_width=tok[1],
        text_layers=len(t["encoder"]["layers"]),
        text_mlp=t["encoder"]["layers"]["0"]["mlp"]["fc1"]["kernel"].shape[1],
    )


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
    def module(self) -> FlaxCLIPModule:
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
    params = jax.tree_util.tree_map(jnp.asarray, unflatten(flat))
    if cache is not None and source is not cache:
        save_flat(cache, flatten(params))
    info = {"source": "mapping" if isinstance(source, Mapping) else os.fspath(source), **report}
    return CLIP(params=params, shapes=shapes, info=info)
