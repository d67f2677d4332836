"""Region stickers (``src/sticker_handler.py`` ``StickerHandler``): four boxes around the eyes, nose and mouth.

Landmarks: ``MTCNN(image_size=112).detect(127.5 * (crop + 1), landmarks=True)`` on the real probe's
normalised crop (``select_largest=True``: the largest face's 5 points); when no face is found the
code falls back to fixed points ``(2W/3, H/3), (W/3, H/3), (W/2, H/2), (W/3, 2H/3), (2W/3, 2H/3)``.

Boxes (W = H = 112): eyes ``int(W/5)`` (even-rounded) x ``int(H/11)`` = 22 x 10 (w x h), nose
22 x 28, mouth ``int(x_right) - int(x_left)`` (even-rounded) x 28, each
``[cy - h//2 : cy + h//2, cx - w//2 : cx + w//2]`` around the ``int`` landmark (mouth: the
midpoint of its corners), in the order right eye (point 0), left eye (point 1), nose, mouth.
Slices follow Python's rules (a negative start counts from the end, an end past the edge is cut),
as the code slices tensors; a sticker whose slice is cut off cannot be added to it (the code's
``try/except`` skips it). Sticker values are the perturbation inside each box clamped to
``±STICKER_MAX`` (32/255).

Representation here: each sticker is a full-size layer [S, S, 3] that is zero outside its box, so
four layers [4, S, S, 3] add exactly as the code adds the boxes one after the other (overlaps add).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxprotect.methods.facecloak.preprocess import largest_first

__all__ = [
    "STICKER_NAMES",
    "StickerLayout",
    "fallback_landmarks",
    "probe_landmarks",
    "sticker_layout",
    "region_masks",
    "init_stickers",
    "extract_stickers",
    "apply_stickers_crop",
    "apply_stickers_image",
]

STICKER_NAMES = ("right_eye", "left_eye", "nose", "mouth")


class StickerLayout(NamedTuple):
    """Where the stickers go on an S x S crop.

    ``landmarks`` [5, 2] float (x, y); ``detected`` whether MTCNN found them (else the fixed
    points); ``sizes`` [4, 2] int (h, w) of each sticker as the code allocates it; ``boxes``
    [4, 4] int ``(y0, y1, x0, x1)`` as the code slices (possibly negative or past the edge);
    ``ranges`` [4, 4] int the rows/columns those slices really select on an S x S crop
    (``y0 == y1`` or ``x0 == x1``: empty).
    """

    landmarks: np.ndarray
    detected: bool
    sizes: np.ndarray
    boxes: np.ndarray
    ranges: np.ndarray


def fallback_landmarks(size: int = 112) -> np.ndarray:
    """The code's fixed points when MTCNN finds no face on the crop: [5, 2] (x, y)."""
    w = h = float(size)
    return np.array([[2 * w / 3.0, h / 3.0], [w / 3, h / 3], [w / 2.0, h / 2.0], [w / 3, 2 * h / 3],
                     [2 * w / 3, 2 * h / 3]], np.float64)


def probe_landmarks(detector, crop) -> tuple[np.ndarray, bool]:
    """5 landmarks [5, 2] of the largest face MTCNN finds on ``127.5·(crop + 1)``, and whether it found one.

    ``crop`` [S, S, 3] float in [-1, 1] (the probe's normalised crop); the code first resizes it
    to 112x112 with ``F.interpolate`` (nearest), an identity at S = 112.
    """
    crop = np.asarray(crop, np.float32)
    size = crop.shape[0]
    if crop.shape[:2] != (112, 112):
        idx = np.minimum(np.floor(np.arange(112) * np.float32(size / 112)).astype(int), size - 1)
        crop = crop[idx][:, idx]
    det = detector.detect(np.float32(127.5) * (crop + np.float32(1.0)))
    order = largest_first(det)
    if len(order) == 0:
        return fallback_landmarks(size), False
    return np.asarray(det.landmarks)[order[0]], True  # float32, as facenet-pytorch returns them


def _even(v: int) -> int:
    return v + v % 2


def _python_range(start: int, stop: int, n: int) -> tuple[int, int]:
    lo, hi, _ = slice(start, stop).indices(n)
    return lo, max(lo, hi)


def sticker_layout(landmarks, detected: bool = True, size: int = 112) -> StickerLayout:
    """The four sticker boxes of ``StickerHandler`` for ``landmarks`` [5, 2] on an S x S crop.

    Where the code would fail (mouth corners in the wrong order give a negative mouth width,
    for which ``torch.rand`` raises), the mouth sticker is empty instead.
    """
    lm = np.asarray(landmarks)  # keep float32 landmarks float32: the mouth midpoint is int()-truncated
    eye = (_even(int(size / 11)), _even(int(size / 5)))
    nose = (_even(int(size / 4)), _even(int(size / 5)))
    mouth_w = max(_even(int(lm[4, 0]) - int(lm[3, 0])), 0)
    mouth = (_even(int(size / 4)), mouth_w)
    centres = [
        (int(lm[0, 1]), int(lm[0, 0])),
        (int(lm[1, 1]), int(lm[1, 0])),
        (int(lm[2, 1]), int(lm[2, 0])),
        (int(lm[3, 1] / 2 + lm[4, 1] / 2), int(lm[3, 0] / 2 + lm[4, 0] / 2)),
    ]
    sizes = np.array([eye, eye, nose, mouth], np.int64)
    boxes, ranges = [], []
    for (cy, cx), (h, w) in zip(centres, sizes):
        y0, y1, x0, x1 = cy - int(h / 2), cy + int(h / 2), cx - int(w / 2), cx + int(w / 2)
        boxes.append((y0, y1, x0, x1))
        ranges.append(_python_range(y0, y1, size) + _python_range(x0, x1, size))
    return StickerLayout(lm, bool(detected), sizes, np.array(boxes, np.int64), np.array(ranges, np.int64))


def region_masks(layout: StickerLayout, size: int = 112) -> np.ndarray:
    """[4, S, S, 1] float32: 1 on the pixels each sticker's slice selects, 0 elsewhere."""
    masks = np.zeros((4, size, size, 1), np.float32)
    for i, (y0, y1, x0, x1) in enumerate(layout.ranges):
        masks[i, y0:y1, x0:x1] = 1.0
    return masks


def _fits(layout: StickerLayout) -> np.ndarray:
    """[4] bool: the slice selects exactly the allocated sticker shape (so the code's ``+=`` works)."""
    r = layout.ranges
    return ((r[:, 1] - r[:, 0]) == layout.sizes[:, 0]) & ((r[:, 3] - r[:, 2]) == layout.sizes[:, 1])


def init_stickers(layout: StickerLayout, draws=None, key=None, size: int = 112) -> np.ndarray:
    """The code's initial stickers ``(2/255)·2·(U[0,1) - 0.5)`` as layers [4, S, S, 3] float32.

    ``draws``: the four uniform [0, 1) arrays of shapes ``(3, h, w)`` (the code's ``torch.rand``
    calls, channel-first), or ``key`` to draw them. A sticker whose slice is cut off the crop is
    left out (the code's ``try/except`` skips adding it). Irrelevant once a step has run: every
    update replaces the stickers.
    """
    if draws is None:
        keys = jax.random.split(key, 4)
        draws = [np.asarray(jax.random.uniform(k, (3, int(h), int(w)))) for k, (h, w) in zip(keys, layout.sizes)]
    layers = np.zeros((4, size, size, 3), np.float32)
    fits = _fits(layout)
    for i, ((y0, y1, x0, x1), d) in enumerate(zip(layout.ranges, draws)):
        if fits[i]:
            values = np.float32(2.0 / 255) * np.float32(2.0) * (np.asarray(d, np.float32) - np.float32(0.5))
            layers[i, y0:y1, x0:x1] = values.transpose(1, 2, 0)
    return layers


def extract_stickers(perturbation, masks, sticker_max: float):
    """``extract_and_update_stickers``: ``clamp(pert[box], ±sticker_max)`` per box, as layers [4, S, S, 3].

    ``perturbation`` [S, S, 3] (the UNCLIPPED ``attn·pert`` in ``afog_cloak_multi``); ``masks``
    from :func:`region_masks`. Works under ``jit``/``vmap``.
    """
    return masks * jnp.clip(perturbation, -sticker_max, sticker_max)[None]


def _add_layers(image, layers, scale):
    out = image
    for i in range(layers.shape[0]):  # one box after the other, as the code adds them
        out = out + layers[i] * scale
    return out


def apply_stickers_crop(crop, layers, sticker_max: float):
    """``apply_stickers(mode="crop")``: add the stickers, then clamp their total to ``±sticker_max``.

    ``crop`` [S, S, 3] in [-1, 1] units; returns ``crop + clamp(Σ stickers, ±max)`` as float32.
    """
    added = _add_layers(crop, layers, jnp.float32(1.0))
    return crop + jnp.clip(added - crop, -sticker_max, sticker_max)


def apply_stickers_image(region, layers, sticker_max: float, scale: float = 255.0):
    """``apply_stickers(mode="image")`` on a face region [S, S, 3] in grey levels (float32).

    Adds ``sticker·scale`` box by box, then clamps the total to ``±scale·sticker_max`` and returns
    ``region + that`` (float32; the code then writes it into an int16 image, truncating).
    """
    region = jnp.asarray(region, jnp.float32)
    added = _add_layers(region, layers, jnp.float32(scale))
    bound = jnp.float32(scale * sticker_max)
    return region + jnp.clip(added - region, -bound, bound)
