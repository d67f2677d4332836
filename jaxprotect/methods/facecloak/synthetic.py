"""The image set a cloak is learnt on, besides the real probe: three sources behind one interface.

FaceCloak makes 8 images of the person with Arc2Face (Stable Diffusion 1.5 + an ArcFace-conditioned
UNet, ``Cloaker.generate_images``). Those weights are not available here and diffusion sampling is
not ported, so a :class:`SyntheticSet` comes from one of:

* ``folder`` (:func:`from_folder`): images the user brings, e.g. Arc2Face outputs made elsewhere;
* ``real`` (:func:`from_photos`): other real photos of the same person (the code's ``--use_real``,
  up to 8 ``train`` photos of the identity);
* ``augment`` (:func:`augment`): made from the single photo with seeded transforms (below);
* ``none`` (:func:`empty`): the probe alone.

Whatever the source, every image then goes through FaceCloak's own pre-processing (MTCNN box,
anisotropic resize, crop), exactly as the code treats its Arc2Face PNGs; the probe comes LAST.

``augment`` (the built-in set). The face region (a square 2.2x the larger side of the MTCNN box,
centred on it, edge-padded where it leaves the photo) is resampled to 256x256 and each image draws,
from its own key: a pose-like similarity warp (rotation ±12°, scale 0.9-1.1, shift ±4% of the
side) and a mild perspective tilt (±6% of the side on one edge pair), a horizontal flip (p 0.5),
lighting (brightness ×0.7-1.3, contrast ×0.75-1.25, gamma 0.75-1.33, a linear light gradient up to
±25% across the face in a random direction), colour (saturation ×0.6-1.4, per-channel gains
0.9-1.1), Gaussian blur σ 0-1.5 px (p 0.5), sensor noise σ 0-4 levels, and JPEG at quality 35-90
(p 0.6). The aim is what transfers a cloak to unseen photos of the same person: photos differ in
pose, light, colour balance, sharpness and compression far more than in identity, so a cloak that
works on all of these variations of the face works on the person's other photos more often than
one fitted to one exact image (``experiments/results/facecloak.md`` compares the sources).
"""
from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from PIL import Image, ImageFilter

from jaxprotect.detect.align import warp_affine
from jaxprotect.methods.facecloak.preprocess import clamp_box, largest_box

__all__ = ["SOURCES", "SyntheticSet", "from_folder", "from_photos", "empty", "augment", "face_region",
           "augment_one", "AUGMENT_SIZE"]

SOURCES = ("folder", "real", "augment", "none")
AUGMENT_SIZE = 256
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


@dataclasses.dataclass(frozen=True)
class SyntheticSet:
    """The extra images of the person: ``images`` uint8 [H, W, 3] (any sizes), the ``source`` they came
    from (one of :data:`SOURCES`) and ``details`` (paths, seed, settings) for reports."""

    images: tuple
    source: str
    details: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {self.source!r}")

    def __len__(self) -> int:
        return len(self.images)

    def describe(self) -> str:
        """One line for reports: e.g. ``augment (8 images, seed 0)``."""
        extra = ""
        if "seed" in self.details:
            extra = f", seed {self.details['seed']}"
        elif "folder" in self.details:
            extra = f", from {self.details['folder']}"
        return f"{self.source} ({len(self.images)} images{extra})"


def _read_many(paths):
    from jaxprotect.io import run_batch
    from jaxprotect.io.photos import read_photo

    report = run_batch(paths, read_photo, quiet=True)
    return [i.value for i in report.succeeded], [i.path for i in report.succeeded], \
        [{"path": i.path, "error": i.error} for i in report.failed]


def from_folder(folder, max_images: int | None = None) -> SyntheticSet:
    """Every readable image in ``folder`` (sorted by name; hidden files skipped), at most ``max_images``.

    Unreadable files are skipped and listed in ``details["skipped"]``; a folder with no usable
    image raises ``ValueError``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in _IMAGE_SUFFIXES)
    images, paths, skipped = _read_many(files[:max_images] if max_images else files)
    if not images:
        raise ValueError(f"no usable image in {folder}")
    return SyntheticSet(tuple(images), "folder", {"folder": os.fspath(folder), "paths": paths, "skipped": skipped})


def from_photos(paths: Sequence, max_images: int = 8) -> SyntheticSet:
    """Other real photos of the same person (the code's ``use_real``: at most 8), in the given order."""
    images, kept, skipped = _read_many(list(paths)[:max_images])
    if not images:
        raise ValueError("none of the given photos could be read")
    return SyntheticSet(tuple(images), "real", {"paths": kept, "skipped": skipped})


def empty() -> SyntheticSet:
    """No extra image: the cloak is learnt on the probe alone."""
    return SyntheticSet((), "none", {})


def face_region(photo, box, factor: float = 2.2, size: int = AUGMENT_SIZE) -> np.ndarray:
    """The square around ``box`` (side ``factor`` x its larger side), edge-padded, resampled to ``size`` (float32)."""
    x1, y1, x2, y2 = box
    side = factor * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    s = size / side
    matrix = np.array([[s, 0.0, size / 2 - s * cx], [0.0, s, size / 2 - s * cy]])
    return warp_affine(np.asarray(photo, np.float32), matrix, (size, size), border="edge")


def _perspective(image, tilt: float, axis: int):
    """A mild keystone: rows (axis 0) or columns (axis 1) scaled linearly from 1 - tilt to 1 + tilt."""
    h, w = image.shape[:2]
    img = Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    d = tilt * (w if axis == 0 else h) / 2
    if axis == 0:  # top edge narrower (or wider) than the bottom one
        quad = (-d, 0, d, h, w - d, h, w + d, 0)
    else:
        quad = (0, -d, 0, h + d, w, h - d, w, d)
    return np.asarray(img.transform((w, h), Image.Transform.QUAD, quad, Image.Resampling.BILINEAR), np.float32)


def augment_one(region, u) -> np.ndarray:
    """One augmented image from a face region [S, S, 3] (0..255) and 20 uniforms ``u`` in [0, 1) (see the module)."""
    size = region.shape[0]
    u = [float(v) for v in u]
    lerp = lambda lo, hi, t: lo + (hi - lo) * t  # noqa: E731
    angle = np.deg2rad(lerp(-12, 12, u[0]))
    scale = lerp(0.9, 1.1, u[1])
    shift = lerp(-0.04, 0.04, np.array([u[2], u[3]])) * size
    c = size / 2
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = np.concatenate([rot, (np.array([c, c]) - rot @ np.array([c, c]) + shift)[:, None]], axis=1)
    x = warp_affine(region, matrix, (size, size), border="edge")
    x = _perspective(x, lerp(-0.06, 0.06, u[4]), int(u[5] < 0.5))
    if u[6] < 0.5:
        x = x[:, ::-1]
    x = x / 255.0
    x = x * lerp(0.7, 1.3, u[7])
    mean = x.mean()
    x = (x - mean) * lerp(0.75, 1.25, u[8]) + mean
    x = np.clip(x, 0, 1) ** np.exp(lerp(np.log(0.75), np.log(1.33), u[9]))
    theta = 2 * np.pi * u[10]
    yy, xx = (np.mgrid[0:size, 0:size] / (size - 1) - 0.5) * 2
    x = x * (1 + lerp(0, 0.25, u[11]) * (np.cos(theta) * xx + np.sin(theta) * yy))[..., None]
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * lerp(0.6, 1.4, u[12])
    x = x * lerp(0.9, 1.1, np.array([u[13], u[14], u[15]]))
    x = np.clip(x * 255.0, 0, 255)
    img = Image.fromarray(np.rint(x).astype(np.uint8))
    if u[16] < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(radius=lerp(0.0, 1.5, u[17])))
    x = np.asarray(img, np.float32)
    noise_rng = np.random.default_rng(int(u[18] * 2**31))
    x = np.clip(x + noise_rng.normal(0, lerp(0, 4, u[18]), x.shape), 0, 255)
    img = Image.fromarray(np.rint(x).astype(np.uint8))
    if u[19] < 0.6:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(lerp(35, 90, u[19] / 0.6)))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(img, np.uint8)


def augment(photo, n: int, key, detector=None, box=None, seed: int | None = None) -> SyntheticSet:
    """``n`` augmented images of the face in ``photo`` (uint8 [H, W, 3]), drawn from ``key``.

    ``box`` the face box (else the largest MTCNN face of ``detector``; the whole photo if none).
    Image ``i`` uses ``jax.random.fold_in(key, i)``, so a set of 8 starts with the set of 4.
    ``seed`` is only recorded in ``details``.
    """
    photo = np.asarray(photo)
    h, w = photo.shape[:2]
    if box is None:
        box = largest_box(detector.detect(photo), h, w)
    box = clamp_box(box, h, w)
    region = face_region(photo, box)
    images = []
    for i in range(n):
        u = np.asarray(jax.random.uniform(jax.random.fold_in(key, i), (20,)), np.float64)
        images.append(augment_one(region, u))
    details = {"n": n, "region_factor": 2.2, "size": AUGMENT_SIZE}
    if seed is not None:
        details["seed"] = seed
    return SyntheticSet(tuple(images), "augment", details)
