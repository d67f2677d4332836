"""The shapes of a CLIP ViT and the transformers linen module they configure.

:class:`ClipShapes` holds everything a checkpoint's shapes determine (OpenAI ``build_model``'s
inference); :func:`build_module` makes transformers' ``FlaxCLIPModule`` for it and
:func:`flax_param_shapes` lists that module's params. Shared by :mod:`jaxprotect.models.clip`
and the converters in :mod:`jaxprotect.models.clip_convert`.
"""
from __future__ import annotations

import dataclasses
import functools
import os

import jax.numpy as jnp

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # jaxprotect never reaches the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from transformers import CLIPConfig  # noqa: E402
from transformers.models.clip.modeling_flax_clip import FlaxCLIPModule  # noqa: E402

__all__ = ["ClipShapes", "VIT_B32", "build_module", "flax_param_shapes", "count_layers", "shapes_of_params"]

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


def count_layers(keys, prefix: str) -> int:
    """Number of numbered blocks ``prefix{i}.`` among ``keys``."""
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
