"""``load_network(name, checkpoint)``: one entry point for every ported network.

Each name maps to a ``module:function`` loader, imported only when asked for, so loading one
network never imports the others (or transformers).
"""
from __future__ import annotations

import importlib

_LOADERS = {
    # face recognisers (images [N, H, W, 3] in [-1, 1] at net.input_size -> embeddings [N, D])
    "irse50": "jaxprotect.models.irse:load_irse50",
    "ir152": "jaxprotect.models.irse:load_ir152",
    "ir50": "jaxprotect.models.irse:load_ir50",
    "mobileface": "jaxprotect.models.mobileface:load_mobileface",
    "facenet": "jaxprotect.models.facenet:load_facenet",
    "facenet_casia": "jaxprotect.models.facenet_casia:load_facenet_casia",
    "mobilefacenet_foamliu": "jaxprotect.models.mobilefacenet_foamliu:load_mobilefacenet_foamliu",
    # detection
    "mtcnn": "jaxprotect.detect.mtcnn:load_mtcnn",
    # generative side of CLIP2Protect
    "stylegan2": "jaxprotect.models.stylegan2:load_stylegan2",
    "e4e": "jaxprotect.models.e4e:load_e4e",
    "lpips_vgg": "jaxprotect.models.lpips:load_lpips_vgg",
    "lpips_alex": "jaxprotect.models.lpips:load_lpips_alex",
    "clip": "jaxprotect.models.clip:load_clip",
    # evaluation: pytorch-fid's FID InceptionV3 (images [N, H, W, 3] in [0, 1] -> pool3 [N, 2048])
    "inception_fid": "jaxprotect.models.inception_fid:load_inception_fid",
}

NETWORK_NAMES = tuple(_LOADERS)


def load_network(name: str, checkpoint=None, **kwargs):
    """Load a ported network.

    ``name`` is one of :data:`NETWORK_NAMES`. ``checkpoint`` is a path to the ORIGINAL PyTorch
    file (or a converted ``.npz``/``.safetensors`` cache), or a mapping {state_dict key: array};
    ``None`` uses the weights shipped with jaxprotect where the licence allows shipping them.
    Returns the network object documented by the loader (for face recognisers a
    :class:`jaxprotect.network.Network`).
    """
    try:
        target = _LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown network {name!r}; choose one of: {', '.join(NETWORK_NAMES)}") from None
    module_name, func_name = target.split(":")
    loader = getattr(importlib.import_module(module_name), func_name)
    return loader(checkpoint, **kwargs)
