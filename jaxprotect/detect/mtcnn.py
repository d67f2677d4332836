"""MTCNN face detector (facenet-pytorch 2.6.0) with real weights: loader, converter, detector object.

``load_mtcnn()`` (registry name ``"mtcnn"``) returns an :class:`MTCNN` whose ``detect(photo)``
gives what ``facenet_pytorch.MTCNN(select_largest=False, post_process=False).detect(img,
landmarks=True)`` gives. Params are ``{"pnet": ..., "rnet": ..., "onet": ...}`` in
facenet-pytorch's state-dict layout; flattened they are ``pnet.conv1.weight`` etc., the layout of
the shipped ``ported_weights/mtcnn.npz`` and of what ``jaxprotect convert mtcnn`` writes.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxprotect.checkpoints.state_dict import CACHE_SUFFIXES, load_state_dict
from jaxprotect.detect.mtcnn_cascade import DEFAULTS, Detections, detect_faces
from jaxprotect.detect.mtcnn_nets import ONet, PNet, RNet
from jaxprotect.nn.torch_layers import param_shapes, params_from_state_dict

__all__ = ["MTCNN", "Detections", "load_mtcnn", "mtcnn_params", "net_shapes", "SHIPPED_FILE", "NETS"]

SHIPPED_FILE = "mtcnn.npz"
NETS = ("pnet", "rnet", "onet")
_MODULES = {"pnet": (PNet, 12), "rnet": (RNet, 24), "onet": (ONet, 48)}


def net_shapes(net: str) -> dict[str, tuple[int, ...]]:
    """``{state-dict key: shape}`` of one of ``"pnet"``, ``"rnet"``, ``"onet"``."""
    module, size = _MODULES[net]
    return param_shapes(module(), jnp.zeros((1, size, size, 3), jnp.float32))


def _find_pt(folder: Path, net: str) -> Path:
    for name in (f"mtcnn_{net}.pt", f"{net}.pt"):  # shared-assets naming, facenet-pytorch's data/ naming
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(
        f"no mtcnn_{net}.pt or {net}.pt in {folder}; MTCNN needs the three facenet-pytorch files "
        "pnet.pt, rnet.pt, onet.pt (in the PyPI wheel facenet-pytorch under facenet_pytorch/data/)"
    )


def _flat_source(checkpoint) -> dict[str, np.ndarray]:
    """One flat ``{pnet.*, rnet.*, onet.*}`` dict from any accepted checkpoint form."""
    if isinstance(checkpoint, Mapping):
        return load_state_dict(checkpoint)
    path = Path(os.fspath(checkpoint))
    if path.is_dir():
        return {f"{net}.{k}": v for net in NETS for k, v in load_state_dict(_find_pt(path, net)).items()}
    if path.suffix in CACHE_SUFFIXES:
        return load_state_dict(path)
    raise ValueError(
        f"MTCNN checkpoint {path}: give the folder holding pnet.pt/rnet.pt/onet.pt (or "
        f"mtcnn_{{pnet,rnet,onet}}.pt), a converted .npz/.safetensors, or a mapping with "
        "pnet./rnet./onet. prefixed keys"
    )


def mtcnn_params(checkpoint) -> dict:
    """Convert MTCNN weights into linen params ``{"pnet": ..., "rnet": ..., "onet": ...}``.

    ``checkpoint``: a folder with the three facenet-pytorch ``.pt`` files, a converted
    ``.npz``/``.safetensors`` with ``pnet.``/``rnet.``/``onet.``-prefixed keys, or such a
    mapping. Raises :class:`~jaxprotect.checkpoints.state_dict.CheckpointKeyError` naming every
    missing, unexpected or mis-shaped key (a key with no known prefix is unexpected).
    """
    flat = _flat_source(checkpoint)
    stray = sorted(k for k in flat if k.split(".", 1)[0] not in NETS)
    if stray:
        from jaxprotect.checkpoints.state_dict import CheckpointKeyError

        raise CheckpointKeyError(
            f"MTCNN checkpoint has keys outside pnet./rnet./onet. ({len(stray)}): {', '.join(stray)}"
        )
    params = {}
    for net in NETS:
        sub = {k[len(net) + 1:]: v for k, v in flat.items() if k.startswith(net + ".")}
        params[net] = params_from_state_dict(sub, net_shapes(net), what=f"MTCNN {net}")
    return params


@dataclasses.dataclass(eq=False)
class MTCNN:
    """A face detector bound to converted MTCNN params.

    ``detect(photo)`` runs the cascade (:func:`~jaxprotect.detect.mtcnn_cascade.detect_faces`)
    with ``min_face_size``, ``thresholds`` and ``factor`` (facenet-pytorch defaults).
    ``params`` is the pure-function argument for ``detect_faces(params, photo)``.
    """

    params: dict
    min_face_size: int = DEFAULTS["min_face_size"]
    thresholds: tuple[float, float, float] = DEFAULTS["thresholds"]
    factor: float = DEFAULTS["factor"]
    info: dict = dataclasses.field(default_factory=dict)

    def detect(self, image: np.ndarray, stages: dict | None = None) -> Detections:
        """Faces in ``image`` ([H, W, 3] uint8 RGB, as :func:`jaxprotect.io.read_photo` returns).

        Returns :class:`Detections` ``(boxes [n,4] x1y1x2y2, probs [n], landmarks [n,5,2] xy)`` in
        pixels, best first; ``stages`` (optional dict) receives the R-/O-Net input boxes.
        """
        return detect_faces(self.params, image, min_face_size=self.min_face_size,
                            thresholds=self.thresholds, factor=self.factor, stages=stages)


def load_mtcnn(checkpoint=None, **options) -> MTCNN:
    """Load MTCNN (registry name ``"mtcnn"``).

    ``checkpoint=None`` uses the shipped ``ported_weights/mtcnn.npz`` (facenet-pytorch's real
    weights, MIT); otherwise anything :func:`mtcnn_params` accepts. ``options`` override
    ``min_face_size``, ``thresholds``, ``factor``.
    """
    if checkpoint is None:
        from ported_weights import shipped

        checkpoint = shipped(SHIPPED_FILE)
    source = checkpoint if isinstance(checkpoint, Mapping) else os.fspath(checkpoint)
    info = {"source": "mapping" if isinstance(source, Mapping) else source,
            "upstream": "facenet-pytorch 2.6.0 models/mtcnn.py (MIT)"}
    return MTCNN(mtcnn_params(checkpoint), info=info, **options)
