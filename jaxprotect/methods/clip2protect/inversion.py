"""The starting W+ code: e4e on the photo, as omertov/encoder4editing ``scripts/inference.py`` runs it
(CLIP2Protect reads its ``latents.pt``): PIL ``Resize((256, 256))`` (bilinear), ``ToTensor``,
``Normalize(0.5, 0.5)``, ``codes = encoder(x) + latent_avg``.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from PIL import Image

__all__ = ["e4e_input", "photo_to_unit", "invert"]


def e4e_input(photo_uint8: np.ndarray, size: int = 256) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [size, size, 3] float32 in [-1, 1]: PIL bilinear resize (PIL's own
    filter support, i.e. antialiased when shrinking, as torchvision's ``Resize`` on a PIL image),
    then ``(x / 255 - 0.5) / 0.5``."""
    img = Image.fromarray(np.asarray(photo_uint8, np.uint8), "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return (photo_to_unit(np.asarray(img)) - np.float32(0.5)) / np.float32(0.5)


def photo_to_unit(photo_uint8: np.ndarray) -> np.ndarray:
    """``ToTensor``: uint8 [..., H, W, 3] -> float32 in [0, 1] (divide by 255)."""
    return np.asarray(photo_uint8, np.float32) / np.float32(255.0)


def invert(e4e, photos_uint8) -> jnp.ndarray:
    """W+ codes [N, n_styles, 512] (latent_avg included) for photos [N, H, W, 3] uint8 RGB
    (sequence or array; any size, each resized to 256). ``e4e``: a loaded
    :class:`jaxprotect.models.e4e.E4E` (``e4e(images [N, 256, 256, 3] in [-1, 1])``)."""
    batch = np.stack([e4e_input(p) for p in photos_uint8])
    return e4e(jnp.asarray(batch))
