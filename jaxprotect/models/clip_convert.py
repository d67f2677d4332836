"""CLIP checkpoints -> ``FlaxCLIPModule`` params, strictly (every key used or explicitly ignored).

Three layouts are recognised by their key names:

* ``openai``: openai/CLIP ``CLIP.state_dict()`` (``visual.conv1.weight``,
  ``visual.transformer.resblocks.N.attn.in_proj_weight``, ``token_embedding.weight``, ...), as in
  ``ViT-B-32.pt``. The TorchScript archive is read as module attributes
  (:func:`jaxprotect.checkpoints.torch_pickle.read_torch_file`), which adds the scalars
  ``input_resolution``/``context_length``/``vocab_size`` (``clip.build_model`` deletes them too) and
  the text blocks' ``attn_mask`` (the causal mask, rebuilt by the model): these are ignored.
* ``hf``: transformers' PyTorch ``CLIPModel.state_dict()`` (``vision_model.embeddings.patch_embedding.weight``,
  ...); old checkpoints' ``*.position_ids`` buffers are ignored.
* ``flax``: our own cache (flattened ``FlaxCLIPModule`` params, ``...kernel``/``scale``/``embedding``).

``openai`` is renamed to ``hf`` (``in_proj`` split into q/k/v, ``proj`` matrices transposed), and ``hf``
goes to ``flax`` with transformers' own ``rename_key_and_reshape_tensor`` rules. The configuration is
inferred from the shapes (OpenAI ``build_model``'s rules: heads = width // 64).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from jaxprotect.checkpoints.state_dict import CheckpointKeyError, check_keys
from jaxprotect.models.clip_shapes import ClipShapes, count_layers, flax_param_shapes

__all__ = [
    "convert_clip_state_dict",
    "detect_layout",
    "openai_to_hf",
    "hf_to_flax",
    "openai_key_shapes",
    "hf_key_shapes",
    "shapes_from_openai",
    "shapes_from_hf",
    "shapes_from_flax",
    "OPENAI_IGNORED",
]

OPENAI_IGNORED = ("input_resolution", "context_length", "vocab_size")
_OPENAI_MASK = re.compile(r"^(visual\.)?transformer\.resblocks\.\d+\.attn_mask$")
_HF_POSITION_IDS = re.compile(r"^(text_model|vision_model)\.embeddings\.position_ids$")


def detect_layout(sd: Mapping[str, np.ndarray]) -> str:
    """``"openai"``, ``"hf"`` or ``"flax"`` from the key names; raises naming some keys otherwise."""
    keys = set(sd)
    if any(k.startswith("visual.") for k in keys) or "token_embedding.weight" in keys:
        return "openai"
    if any(k.startswith(("vision_model.", "text_model.")) for k in keys):
        flax_like = any(k.endswith((".kernel", ".scale", ".embedding")) for k in keys)
        return "flax" if flax_like else "hf"
    sample = ", ".join(sorted(keys)[:8])
    raise CheckpointKeyError(
        "not a CLIP checkpoint: expected OpenAI keys (visual.*, token_embedding.weight), HF CLIPModel keys "
        f"(vision_model.*, text_model.*) or a jaxprotect cache; found {len(keys)} keys: {sample}"
    )


def _require(sd, keys, what):
    missing = [k for k in keys if k not in sd]
    if missing:
        raise CheckpointKeyError(f"{what}: cannot infer the network's shape, missing keys: {', '.join(missing)}")


def shapes_from_openai(sd) -> ClipShapes:
    """Infer :class:`ClipShapes` from an OpenAI-layout state dict (as ``clip.model.build_model``)."""
    if "visual.proj" not in sd and any(k.startswith("visual.layer1.") for k in sd):
        raise ValueError("ResNet CLIP checkpoints (RN50, ...) are not supported; use a ViT checkpoint")
    _require(
        sd,
        ["visual.conv1.weight", "visual.positional_embedding", "visual.proj", "text_projection",
         "positional_embedding", "token_embedding.weight", "ln_final.weight",
         "visual.transformer.resblocks.0.mlp.c_fc.weight", "transformer.resblocks.0.mlp.c_fc.weight"],
        "OpenAI CLIP checkpoint",
    )
    conv = sd["visual.conv1.weight"].shape  # (width, 3, p, p)
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    return ClipShapes(
        embed_dim=sd["text_projection"].shape[1],
        image_resolution=conv[-1] * grid,
        vision_width=conv[0],
        vision_layers=count_layers(sd, "visual.transformer.resblocks."),
        vision_patch_size=conv[-1],
        vision_mlp=sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        context_length=sd["positional_embedding"].shape[0],
        vocab_size=sd["token_embedding.weight"].shape[0],
        text_width=sd["ln_final.weight"].shape[0],
        text_layers=count_layers(sd, "transformer.resblocks."),
        text_mlp=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
    )


def openai_key_shapes(s: ClipShapes) -> dict[str, tuple[int, ...]]:
    """``{OpenAI state-dict key: shape}`` of a ViT CLIP with shapes ``s``."""
    out: dict[str, tuple[int, ...]] = {}

    def tower(prefix: str, width: int, mlp: int, layers: int):
        for i in range(layers):
            p = f"{prefix}resblocks.{i}"
            out[f"{p}.attn.in_proj_weight"] = (3 * width, width)
            out[f"{p}.attn.in_proj_bias"] = (3 * width,)
            out[f"{p}.attn.out_proj.weight"] = (width, width)
            out[f"{p}.attn.out_proj.bias"] = (width,)
            for ln in ("ln_1", "ln_2"):
                out[f"{p}.{ln}.weight"] = (width,)
                out[f"{p}.{ln}.bias"] = (width,)
            out[f"{p}.mlp.c_fc.weight"] = (mlp, width)
            out[f"{p}.mlp.c_fc.bias"] = (mlp,)
            out[f"{p}.mlp.c_proj.weight"] = (width, mlp)
            out[f"{p}.mlp.c_proj.bias"] = (width,)

    wv, wt = s.vision_width, s.text_width
    out["positional_embedding"] = (s.context_length, wt)
    out["text_projection"] = (wt, s.embed_dim)
    out["logit_scale"] = ()
    out["visual.class_embedding"] = (wv,)
    out["visual.positional_embedding"] = (s.grid**2 + 1, wv)
    out["visual.proj"] = (wv, s.embed_dim)
    out["visual.conv1.weight"] = (wv, 3, s.vision_patch_size, s.vision_patch_size)
    for ln in ("visual.ln_pre", "visual.ln_post", "ln_final"):
        width = wt if ln == "ln_final" else wv
        out[f"{ln}.weight"] = (width,)
        out[f"{ln}.bias"] = (width,)
    tower("visual.transformer.", wv, s.vision_mlp, s.vision_layers)
    tower("transformer.", wt, s.text_mlp, s.text_layers)
    out["token_embedding.weight"] = (s.vocab_size, wt)
    return out


def _split_ignored(sd, is_ignored):
    kept = {k: v for k, v in sd.items() if not is_ignored(k)}
    return kept, sorted(set(sd) - set(kept))


def openai_to_hf(sd: Mapping[str, np.ndarray]) -> tuple[ClipShapes, dict[str, np.ndarray], list[str]]:
    """OpenAI-layout state dict -> (shapes, HF ``CLIPModel`` state dict, ignored keys).

    Raises :class:`CheckpointKeyError` naming every missing, unexpected or mis-shaped OpenAI key.
    """
    sd, ignored = _split_ignored(sd, lambda k: k in OPENAI_IGNORED or bool(_OPENAI_MASK.match(k)))
    shapes = shapes_from_openai(sd)
    sd = check_keys(sd, openai_key_shapes(shapes), what="OpenAI CLIP checkpoint")
    out: dict[str, np.ndarray] = {}
    block = {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
             "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}

    def tower(src: str, dst: str, layers: int):
        for i in range(layers):
            p, q = f"{src}resblocks.{i}", f"{dst}.encoder.layers.{i}"
            for name, (wq, wk, wv) in (("weight", np.split(sd[f"{p}.attn.in_proj_weight"], 3)),
                                      ("bias", np.split(sd[f"{p}.attn.in_proj_bias"], 3))):
                out[f"{q}.self_attn.q_proj.{name}"] = wq
                out[f"{q}.self_attn.k_proj.{name}"] = wk
                out[f"{q}.self_attn.v_proj.{name}"] = wv
            for a, b in block.items():
                out[f"{q}.{b}.weight"] = sd[f"{p}.{a}.weight"]
                out[f"{q}.{b}.bias"] = sd[f"{p}.{a}.bias"]

    out["vision_model.embeddings.patch_embedding.weight"] = sd["visual.conv1.weight"]
    out["vision_model.embeddings.class_embedding"] = sd["visual.class_embedding"]
    out["vision_model.embeddings.position_embedding.weight"] = sd["visual.positional_embedding"]
    for a, b in (("visual.ln_pre", "vision_model.pre_layrnorm"), ("visual.ln_post", "vision_model.post_layernorm"),
                 ("ln_final", "text_model.final_layer_norm")):
        out[f"{b}.weight"] = sd[f"{a}.weight"]
        out[f"{b}.bias"] = sd[f"{a}.bias"]
    tower("visual.transformer.", "vision_model", shapes.vision_layers)
    tower("transformer.", "text_model", shapes.text_layers)
    out["text_model.embeddings.token_embedding.weight"] = sd["token_embedding.weight"]
    out["text_model.embeddings.position_embedding.weight"] = sd["positional_embedding"]
    # OpenAI applies these as x @ P; torch Linear (HF) stores P.T
    out["visual_projection.weight"] = np.ascontiguousarray(sd["visual.proj"].T)
    out["text_projection.weight"] = np.ascontiguousarray(sd["text_projection"].T)
    out["logit_scale"] = sd["logit_scale"]
    return shapes, out, ignored


def shapes_from_hf(sd) -> ClipShapes:
    """Infer :class:`ClipShapes` from a transformers PyTorch ``CLIPModel`` state dict."""
    v, t = "vision_model.", "text_model."
    need = [f"{v}embeddings.patch_embedding.weight", f"{v}embeddings.position_embedding.weight",
            f"{t}embeddings.token_embedding.weight", f"{t}embeddings.position_embedding.weight",
            "text_projection.weight", f"{v}encoder.layers.0.mlp.fc1.weight", f"{t}encoder.layers.0.mlp.fc1.weight"]
    _require(sd, need, "HF CLIPModel checkpoint")
    conv = sd[need[0]].shape
    grid = round((sd[need[1]].shape[0] - 1) ** 0.5)
    return ClipShapes(
        embed_dim=sd["text_projection.weight"].shape[0],
        image_resolution=conv[-1] * grid,
        vision_width=conv[0],
        vision_layers=count_layers(sd, f"{v}encoder.layers."),
        vision_patch_size=conv[-1],
        vision_mlp=sd[need[5]].shape[0],
        context_length=sd[need[3]].shape[0],
        vocab_size=sd[need[2]].shape[0],
        text_width=sd[need[2]].shape[1],
        text_layers=count_layers(sd, f"{t}encoder.layers."),
        text_mlp=sd[need[6]].shape[0],
    )


def hf_key_shapes(s: ClipShapes) -> dict[str, tuple[int, ...]]:
    """``{HF PyTorch key: shape}``: the inverse of transformers' PT->Flax renames applied to our Flax keys."""
    out = {}
    for key, shape in flax_param_shapes(s).items():
        stem, leaf = key.rsplit(".", 1) if "." in key else ("", key)
        if leaf == "kernel" and len(shape) == 4:  # HWIO -> OIHW
            out[f"{stem}.weight"] = (shape[3], shape[2], shape[0], shape[1])
        elif leaf == "kernel":
            out[f"{stem}.weight"] = tuple(reversed(shape))
        elif leaf in ("scale", "embedding"):
            out[f"{stem}.weight"] = shape
        else:
            out[key] = shape
    return out


def hf_to_flax(sd: Mapping[str, np.ndarray]) -> tuple[ClipShapes, dict[str, np.ndarray], list[str]]:
    """HF PyTorch ``CLIPModel`` state dict -> (shapes, flat Flax params, ignored keys).

    Keys are checked in HF names first (every missing/unexpected/mis-shaped one named), then renamed
    and reshaped by ``transformers.modeling_flax_pytorch_utils.rename_key_and_reshape_tensor``.
    """
    from transformers.modeling_flax_pytorch_utils import rename_key_and_reshape_tensor

    sd, ignored = _split_ignored(sd, lambda k: bool(_HF_POSITION_IDS.match(k)))
    shapes = shapes_from_hf(sd)
    sd = check_keys(sd, hf_key_shapes(shapes), what="HF CLIPModel checkpoint")
    expected = flax_param_shapes(shapes)
    flax_keys = {tuple(k.split(".")): None for k in expected}
    out = {}
    for key, value in sd.items():
        new_key, new_value = rename_key_and_reshape_tensor(tuple(key.split(".")), value, flax_keys, "clip")
        out[".".join(new_key)] = np.array(new_value, order="C")  # (ascontiguousarray makes 0-d 1-d)
    return shapes, check_keys(out, expected, what="converted HF CLIPModel params"), ignored


def shapes_from_flax(sd) -> ClipShapes:
    """Infer :class:`ClipShapes` from flattened ``FlaxCLIPModule`` params (our cache)."""
    v, t = "vision_model.", "text_model."
    need = [f"{v}embeddings.patch_embedding.kernel", f"{v}embeddings.position_embedding.embedding",
            f"{t}embeddings.token_embedding.embedding", f"{t}embeddings.position_embedding.embedding",
            "text_projection.kernel", f"{v}encoder.layers.0.mlp.fc1.kernel", f"{t}encoder.layers.0.mlp.fc1.kernel"]
    _require(sd, need, "jaxprotect CLIP cache")
    patch = sd[need[0]].shape  # (p, p, 3, width)
    grid = round((sd[need[1]].shape[0] - 1) ** 0.5)
    return ClipShapes(
        embed_dim=sd["text_projection.kernel"].shape[1],
        image_resolution=patch[0] * grid,
        vision_width=patch[3],
        vision_layers=count_layers(sd, f"{v}encoder.layers."),
        vision_patch_size=patch[0],
        vision_mlp=sd[need[5]].shape[1],
        context_length=sd[need[3]].shape[0],
        vocab_size=sd[need[2]].shape[0],
        text_width=sd[need[2]].shape[1],
        text_layers=count_layers(sd, f"{t}encoder.layers."),
        text_mlp=sd[need[6]].shape[1],
    )


def convert_clip_state_dict(sd: Mapping[str, np.ndarray]) -> tuple[ClipShapes, dict[str, np.ndarray], dict]:
    """Any supported CLIP state dict -> (shapes, flat float32 ``FlaxCLIPModule`` params, report).

    ``report`` = ``{"layout", "ignored_keys", "source_dtypes"}``. Raises :class:`CheckpointKeyError`
    naming every key that is missing, unexpected or of the wrong shape (in the checkpoint's own names).
    """
    layout = detect_layout(sd)
    dtypes = sorted({str(np.asarray(v).dtype) for v in sd.values()})
    if layout == "openai":
        shapes, hf, ignored = openai_to_hf(sd)
        shapes, flat, _ = hf_to_flax(hf)
    elif layout == "hf":
        shapes, flat, ignored = hf_to_flax(sd)
    else:
        shapes = shapes_from_flax(sd)
        flat, ignored = check_keys(sd, flax_param_shapes(shapes), what="jaxprotect CLIP cache"), []
    return shapes, flat, {"layout": layout, "ignored_keys": ignored, "source_dtypes": dtypes}
