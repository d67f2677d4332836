"""CLIP ViT in Flax: converters (OpenAI dict, TorchScript archive, HF CLIPModel, our cache) against PyTorch.

Parity of the full-size ViT-B/32 with its golden is in test_golden_parity.
"""
from __future__ import annotations

import argparse
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers.clip_helpers import TINY, tiny_openai_state_dict, tiny_shapes

from jaxprotect.checkpoints.state_dict import CheckpointKeyError, flatten, load_flat, save_flat
from jaxprotect.models.clip import build_module, flax_param_shapes, load_clip, text_apply
from jaxprotect.models.clip_convert import OPENAI_IGNORED, openai_key_shapes, openai_to_hf
from jaxprotect.registry import load_network

PROMPTS = ["a photo of a cat", "red lipstick", "tanned makeup with black lipstick", "face"]


def _nchw_to_nhwc(x):
    return np.transpose(np.asarray(x), (0, 2, 3, 1))


def _tiny_images(n=2, seed=1):
    r = TINY["image_resolution"]
    return np.random.default_rng(seed).standard_normal((n, r, r, 3)).astype(np.float32)


# ---------------------------------------------------------------- tiny configs: converters


def test_flax_param_shapes_match_the_module():
    module = build_module(tiny_shapes())
    variables = jax.eval_shape(
        lambda: module.init(
            jax.random.key(0),
            input_ids=jnp.zeros((1, 77), jnp.int32),
            pixel_values=jnp.zeros((1, 32, 32, 3)),
            attention_mask=jnp.ones((1, 77), jnp.int32),
            position_ids=jnp.zeros((1, 77), jnp.int32),
        )
    )
    got = {k: tuple(v.shape) for k, v in flatten(variables["params"]).items()}
    assert got == flax_param_shapes(tiny_shapes())


def test_openai_dict_conversion_reproduces_weights():
    sd = tiny_openai_state_dict()
    net = load_clip(sd)
    p = net.params
    w = TINY["vision_width"]
    q = sd["visual.transformer.resblocks.1.attn.in_proj_weight"]
    layer = p["vision_model"]["encoder"]["layers"]["1"]["self_attn"]
    np.testing.assert_array_equal(layer["q_proj"]["kernel"], q[:w].T)
    np.testing.assert_array_equal(layer["k_proj"]["kernel"], q[w : 2 * w].T)
    np.testing.assert_array_equal(layer["v_proj"]["kernel"], q[2 * w :].T)
    np.testing.assert_array_equal(p["visual_projection"]["kernel"], sd["visual.proj"])
    np.testing.assert_array_equal(p["text_projection"]["kernel"], sd["text_projection"])
    np.testing.assert_array_equal(
        p["vision_model"]["embeddings"]["patch_embedding"]["kernel"], sd["visual.conv1.weight"].transpose(2, 3, 1, 0)
    )
    assert net.info["layout"] == "openai" and net.shapes == tiny_shapes()


def test_encode_text_cut_after_eot_equals_full_length():
    net = load_clip(tiny_openai_state_dict())
    ids = net.tokenize(PROMPTS)
    full = text_apply(net.params, ids)  # all 77 positions
    np.testing.assert_allclose(np.asarray(net.encode_text(ids)), np.asarray(full), atol=2e-6, rtol=0)


@pytest.mark.parametrize("layout", ["openai", "hf", "flax"])
@pytest.mark.parametrize("fault", ["missing", "unexpected", "shape"])
def test_converter_errors_name_the_keys(layout, fault):
    sd = tiny_openai_state_dict()
    if layout == "hf":
        _, sd, _ = openai_to_hf(sd)
    elif layout == "flax":
        sd = flatten(load_clip(sd).params)
        sd = {k: np.asarray(v) for k, v in sd.items()}
    victim = {"openai": "visual.transformer.resblocks.1.ln_2.bias",
              "hf": "vision_model.encoder.layers.1.layer_norm2.bias",
              "flax": "vision_model.encoder.layers.1.layer_norm2.bias"}[layout]
    if fault == "missing":
        del sd[victim]
    elif fault == "unexpected":
        victim = victim.replace("ln_2.bias", "ln_3.bias").replace("layer_norm2", "layer_norm3")
        sd[victim] = np.zeros(3, np.float32)
    else:
        sd[victim] = np.zeros(5, np.float32)
    with pytest.raises(CheckpointKeyError, match=victim.replace(".", r"\.")):
        load_clip(sd)


def test_not_a_clip_checkpoint_is_refused():
    with pytest.raises(CheckpointKeyError, match="not a CLIP checkpoint"):
        load_clip({"conv1.weight": np.zeros((3, 3, 1, 1), np.float32)})


def test_cache_round_trip_through_convert_command(tmp_path):
    from jaxprotect.commands import convert

    sd = tiny_openai_state_dict()
    src = tmp_path / "tiny_openai.npz"
    save_flat(src, sd)
    out = tmp_path / "clip_cache.safetensors"
    assert convert.run(argparse.Namespace(kind="clip", source=str(src), output=str(out))) == 0
    cached = load_network("clip", str(out))
    assert cached.info["layout"] == "flax"
    direct = load_clip(sd)
    for k, v in flatten(direct.params).items():
        np.testing.assert_array_equal(np.asarray(flatten(cached.params)[k]), np.asarray(v), err_msg=k)
    x = _tiny_images()
    np.testing.assert_array_equal(np.asarray(cached.encode_image(x)), np.asarray(direct.encode_image(x)))
    # load_clip(cache=...) writes the cache once, then reads it
    cache = tmp_path / "auto.npz"
    first = load_clip(sd, cache=str(cache))
    assert cache.exists() and first.info["layout"] == "openai"
    second = load_clip(None, cache=str(cache))
    assert second.info["layout"] == "flax" and set(load_flat(cache)) == set(flatten(first.params))


# ---------------------------------------------------------------- against PyTorch (test extra)


def _torch_openai_clip(torch, sd):
    """A small CLIP written like openai/CLIP clip/model.py, with OpenAI's attribute names."""
    nn = torch.nn
    s = tiny_shapes()

    class QuickGELU(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(1.702 * x)

    class Block(nn.Module):
        def __init__(self, width: int, heads: int, attn_mask):
            super().__init__()
            self.attn = nn.MultiheadAttention(width, heads)
            self.ln_1 = nn.LayerNorm(width)
            self.mlp = nn.Sequential(OrderedDict(
                [("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(4 * width, width))]
            ))
            self.ln_2 = nn.LayerNorm(width)
            self.attn_mask = attn_mask

        def forward(self, x):
            h = self.ln_1(x)
            x = x + self.attn(h, h, h, need_weights=False, attn_mask=self.attn_mask)[0]
            return x + self.mlp(self.ln_2(x))

    class Transformer(nn.Module):
        def __init__(self, width: int, layers: int, attn_mask=None):
            super().__init__()
            self.resblocks = nn.Sequential(*[Block(width, width // 64, attn_mask) for _ in range(layers)])

        def forward(self, x):
            return self.resblocks(x)

    class Visual(nn.Module):
        def __init__(self):
            super().__init__()
            w, p = s.vision_width, s.vision_patch_size
            self.conv1 = nn.Conv2d(3, w, kernel_size=p, stride=p, bias=False)
            self.class_embedding = nn.Parameter(torch.zeros(w))
            self.positional_embedding = nn.Parameter(torch.zeros(s.grid**2 + 1, w))
            self.ln_pre = nn.LayerNorm(w)
            self.transformer = Transformer(w, s.vision_layers)
            self.ln_post = nn.LayerNorm(w)
            self.proj = nn.Parameter(torch.zeros(w, s.embed_dim))

        def forward(self, x):
            x = self.conv1(x)
            x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
            cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
            x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
            x = self.ln_pre(x).permute(1, 0, 2)
            x = self.transformer(x).permute(1, 0, 2)
            return self.ln_post(x[:, 0, :]) @ self.proj

    class CLIP(nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = Visual()
            mask = torch.full((s.context_length, s.context_length), float("-inf")).triu_(1)
            self.transformer = Transformer(s.text_width, s.text_layers, mask)
            self.token_embedding = nn.Embedding(s.vocab_size, s.text_width)
            self.positional_embedding = nn.Parameter(torch.zeros(s.context_length, s.text_width))
            self.ln_final = nn.LayerNorm(s.text_width)
            self.text_projection = nn.Parameter(torch.zeros(s.text_width, s.embed_dim))
            self.logit_scale = nn.Parameter(torch.ones([]))
            # OpenAI's TorchScript archive carries these as tensors (clip.build_model deletes them)
            self.register_buffer("input_resolution", torch.tensor(s.image_resolution))
            self.register_buffer("context_length", torch.tensor(s.context_length))
            self.register_buffer("vocab_size", torch.tensor(s.vocab_size))

        @torch.jit.export
        def encode_image(self, image):
            return self.visual(image)

        @torch.jit.export
        def encode_text(self, text):
            x = self.token_embedding(text) + self.positional_embedding
            x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
            x = self.ln_final(x)
            return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection

        def forward(self, image, text):
            return self.encode_image(image), self.encode_text(text)

    model = CLIP().eval()
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)
    assert sorted(missing) == sorted(OPENAI_IGNORED) and not unexpected
    return model


def _torch_features(torch, model, images_nhwc, ids):
    with torch.no_grad():
        img = model.encode_image(torch.from_numpy(np.transpose(images_nhwc, (0, 3, 1, 2)).copy()))
        txt = model.encode_text(torch.from_numpy(np.asarray(ids)))
    return img.float().numpy(), txt.float().numpy()


def test_openai_state_dict_matches_torch_reference():
    torch = pytest.importorskip("torch")
    sd = tiny_openai_state_dict(seed=3)
    model = _torch_openai_clip(torch, sd)
    net = load_clip(dict(model.state_dict()))  # torch tensors, with the archive's scalar buffers
    assert sorted(net.info["ignored_keys"]) == sorted(OPENAI_IGNORED)
    ids, x = net.tokenize(PROMPTS), _tiny_images()
    ref_img, ref_txt = _torch_features(torch, model, x, ids)
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(np.asarray(net.encode_image(x)), ref_img, atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.asarray(net.encode_text(ids)), ref_txt, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_fp16_archive(tmp_path):
    """OpenAI ships ViT-B-32.pt as an fp16 TorchScript archive: build one, read it without running it."""
    torch = pytest.importorskip("torch")
    from jaxprotect.checkpoints.torch_pickle import read_torch_file, tensors_of

    sd = {k: v.astype(np.float16).astype(np.float32) for k, v in tiny_openai_state_dict(seed=5).items()}
    model = _torch_openai_clip(torch, sd)
    ids, x = load_clip(sd).tokenize(PROMPTS), _tiny_images()
    ref_img, ref_txt = _torch_features(torch, model, x, ids)  # float32 maths on the fp16-representable weights
    path = tmp_path / "ViT-tiny.pt"
    torch.jit.save(torch.jit.script(model.half()), str(path))

    keys = set(tensors_of(read_torch_file(path)))
    masks = {f"transformer.resblocks.{i}.attn_mask" for i in range(TINY["text_layers"])}
    assert keys == set(openai_key_shapes(tiny_shapes())) | set(OPENAI_IGNORED) | masks

    net = load_clip(str(path))
    assert net.info["layout"] == "openai" and "float16" in net.info["source_dtypes"]
    assert sorted(net.info["ignored_keys"]) == sorted(set(OPENAI_IGNORED) | masks)
    leaves = jax.tree_util.tree_leaves(net.params)
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(np.asarray(net.encode_image(x)), ref_img, atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.asarray(net.encode_text(ids)), ref_txt, atol=1e-5, rtol=0)


def test_hf_pytorch_state_dict_matches_transformers():
    torch = pytest.importorskip("torch")
    from transformers import CLIPModel

    s = tiny_shapes()
    torch.manual_seed(0)
    hf = CLIPModel(s.to_config()).eval()
    with torch.no_grad():  # LayerNorms away from (1, 0) so that swapped scale/bias would show
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    net = load_clip(dict(hf.state_dict()))
    assert net.info["layout"] == "hf" and net.shapes == s
    ids, x = net.tokenize(PROMPTS), _tiny_images()
    with torch.no_grad():
        ref_img = hf.get_image_features(pixel_values=torch.from_numpy(np.transpose(x, (0, 3, 1, 2)).copy())).numpy()
        ref_txt = hf.get_text_features(input_ids=torch.from_numpy(ids)).numpy()
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(np.asarray(net.encode_image(x)), ref_img, atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.asarray(net.encode_text(ids)), ref_txt, atol=1e-5, rtol=0)


def test_missing_default_checkpoint_says_where_to_get_it(monkeypatch, tmp_path):
    import jaxprotect.models.clip as clip_module

    monkeypatch.setattr(clip_module, "OPENAI_CACHE_PATH", tmp_path / "absent" / "ViT-B-32.pt")
    with pytest.raises(FileNotFoundError, match="ViT-B-32.pt"):
        load_clip(None)
