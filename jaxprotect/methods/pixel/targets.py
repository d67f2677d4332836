"""Target identities for TIP-IM and the impersonating noise attacks.

TIP-IM steers each face towards other people's identities (``targets/target_attacks.txt`` upstream,
not shipped). Here they come from aligned crops of other people: a folder the user gives, or
faces of scikit-image's ``lfw_subset`` (25x25 grey LFW crops every scikit-image install has,
nothing downloaded); or, without crops, :func:`synthetic_targets`: random unit vectors per
embedding space, virtual identities no real face owns. On the astronaut photo LFW-subset targets
transferred better to unseen judges than synthetic ones, hence the commands' default.
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxprotect.detect.align import align_face
from jaxprotect.face_conventions import pick_face
from jaxprotect.io import NoFaceError, read_photo, run_batch

__all__ = ["SKIMAGE_LFW", "SYNTHETIC", "synthetic_targets", "skimage_lfw_targets", "aligned_face", "folder_targets"]

SKIMAGE_LFW = "skimage-lfw"
SYNTHETIC = "synthetic"


def synthetic_targets(key, dims, num_targets: int = 10) -> tuple:
    """Virtual target identities: per surrogate, ``num_targets`` random unit vectors [T, D_m] (``dims`` = D_m's)."""
    keys = jax.random.split(key, len(dims))
    out = []
    for k, d in zip(keys, dims):
        v = jax.random.normal(k, (num_targets, d), jnp.float32)
        out.append(v / jnp.linalg.norm(v, axis=1, keepdims=True))
    return tuple(out)


def skimage_lfw_targets(num: int, size: int) -> np.ndarray:
    """``num`` faces of scikit-image's ``lfw_subset``, evenly spaced over its 100 faces, as RGB
    [num, size, size, 3] float32 0..255 (bilinear upscaling of the 25x25 grey crops)."""
    import skimage.data

    faces = skimage.data.lfw_subset()[:100]
    idx = np.linspace(0, 99, num).round().astype(int)
    grey = np.repeat(faces[idx][..., None], 3, axis=-1).astype(np.float32) * 255.0
    return np.asarray(jax.image.resize(jnp.asarray(grey), (num, size, size, 3), "bilinear"))


def aligned_face(path, detector, size: int) -> np.ndarray:
    """The aligned crop [size, size, 3] float32 0..255 of the largest face in the photo at ``path``."""
    photo = read_photo(path)
    det = detector.detect(photo)
    index = pick_face(det, "largest")
    if index is None:
        raise NoFaceError(path, "no face detected in this target photo")
    return align_face(photo, det.landmarks[index], size).image


def folder_targets(folder, detector, size: int) -> tuple[np.ndarray, list]:
    """Aligned crops [T, size, size, 3] of the largest face of every photo in ``folder``, and the
    (path, reason) of each photo that gave none. Raises ValueError when no photo gives a face."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"targets folder {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    report = run_batch(files, lambda p: aligned_face(p, detector, size), quiet=True)
    crops = [item.value for item in report.succeeded]
    if not crops:
        raise ValueError(f"no usable target face in {folder}")
    return np.stack(crops), [(item.path, item.error) for item in report.failed]
