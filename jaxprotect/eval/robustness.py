"""What happens to a photo after it is posted: JPEG re-encoding, downscaling, blur, through FILES.

Each transform opens the photo as a Pillow image, writes the transformed result to a file in a
temporary folder with Pillow, and reads that file back with :func:`jaxprotect.io.read_photo`, so
the judges see exactly what a decoder gives for the saved file (JPEG's chroma subsampling and
quantisation included), never an in-memory float array.

| name | what is written |
| --- | --- |
| ``jpeg90`` / ``jpeg75`` / ``jpeg50`` | JPEG at Pillow quality 90 / 75 / 50 (Pillow defaults: 4:2:0 chroma subsampling, standard tables) |
| ``downscale0.5`` | PNG of the photo resized to half its width and height (rounded down, at least 1 px) with Pillow bicubic (antialiased) |
| ``blur1`` | PNG of the photo blurred by Pillow's ``GaussianBlur(radius=1)`` (radius = the Gaussian's standard deviation, 1 px) |
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from jaxprotect.io import read_photo

__all__ = ["TRANSFORMS", "DEFAULT_TRANSFORMS", "write_transformed", "transformed_photo", "TransformedFiles"]

DEFAULT_TRANSFORMS = ("jpeg90", "jpeg75", "jpeg50", "downscale0.5", "blur1")


def _jpeg(quality):
    return lambda im, path: im.save(path, "JPEG", quality=quality)


def _downscale(factor):
    def write(im, path):
        size = (max(1, int(im.width * factor)), max(1, int(im.height * factor)))
        im.resize(size, Image.BICUBIC).save(path, "PNG")
    return write


def _blur(sigma):
    return lambda im, path: im.filter(ImageFilter.GaussianBlur(radius=sigma)).save(path, "PNG")


# name -> (file suffix, writer(PIL image, path), description)
TRANSFORMS = {
    "jpeg90": (".jpg", _jpeg(90), "JPEG quality 90 (Pillow, 4:2:0)"),
    "jpeg75": (".jpg", _jpeg(75), "JPEG quality 75 (Pillow, 4:2:0)"),
    "jpeg50": (".jpg", _jpeg(50), "JPEG quality 50 (Pillow, 4:2:0)"),
    "downscale0.5": (".png", _downscale(0.5), "downscaled x0.5 (Pillow bicubic), PNG"),
    "blur1": (".png", _blur(1.0), "Gaussian blur sigma 1 px (Pillow GaussianBlur), PNG"),
}


def write_transformed(photo: np.ndarray, name: str, folder, stem: str = "photo") -> Path:
    """Write ``photo`` (uint8 [H, W, 3]) transformed by ``name`` into ``folder``; returns the file's path."""
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; choose from {', '.join(TRANSFORMS)}")
    suffix, writer, _ = TRANSFORMS[name]
    path = Path(folder) / f"{stem}.{name}{suffix}"
    writer(Image.fromarray(np.asarray(photo, np.uint8), "RGB"), path)
    return path


def transformed_photo(photo: np.ndarray, name: str, folder=None, stem: str = "photo") -> np.ndarray:
    """The photo as a decoder reads it back after the transform ``name`` was saved to a file.

    ``folder``: where the file goes (kept); None uses a temporary folder that is removed after
    reading. Returns uint8 [H', W', 3].
    """
    if folder is not None:
        return read_photo(write_transformed(photo, name, folder, stem))
    with tempfile.TemporaryDirectory(prefix="jaxprotect-robustness-") as tmp:
        return read_photo(write_transformed(photo, name, tmp, stem))


class TransformedFiles:
    """A temporary folder of transformed files for one evaluation; ``get(photo, name, stem)`` reads
    each file back; ``close()`` (or the context manager) removes the folder."""

    def __init__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="jaxprotect-robustness-")
        self.folder = Path(self._tmp.name)
        self.written: list[Path] = []

    def get(self, photo: np.ndarray, name: str, stem: str) -> np.ndarray:
        """Write ``photo`` transformed by ``name`` as ``<stem>.<name>.<ext>`` and return what read_photo reads."""
        path = write_transformed(photo, name, self.folder, stem)
        self.written.append(path)
        return read_photo(path)

    def close(self):
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
