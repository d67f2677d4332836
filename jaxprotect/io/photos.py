"""Reading users' photos safely and writing results without metadata, atomically, never over an input.

Reading (:func:`read_photo`; :func:`decode_photo` for bytes held in memory) gives ``uint8`` RGB
``[H, W, 3]`` arrays:

* Formats: JPEG (and MPO, the multi-picture JPEG some cameras write: its primary image), PNG,
  WebP, still GIF, BMP. Anything else raises :class:`UnsupportedFormatError`; a file no decoder
  recognises, :class:`NotAnImageError`.
* Animations (animated GIF, APNG, animated WebP) are refused with :class:`AnimatedImageError`:
  protecting only the first frame would leave the person recognisable in the others.
* Size is checked from the header BEFORE any pixel is decoded: more than ``MAX_PIXELS`` (50 MP,
  or Pillow's ``Image.MAX_IMAGE_PIXELS`` if that is lower) or a side over ``MAX_SIDE`` (20000)
  raises :class:`PhotoTooLargeError`; a side under ``MIN_SIDE`` (20 px, MTCNN's smallest face)
  raises :class:`PhotoTooSmallError`. Pillow's own decompression-bomb error is reported the same way.
* A file that ends early raises :class:`TruncatedPhotoError`, other decoder failures
  :class:`CorruptPhotoError` (this relies on Pillow's default ``ImageFile.LOAD_TRUNCATED_IMAGES
  = False``).
* The EXIF orientation tag is applied (the array is the photo as it is meant to be seen).
* Conversions to RGB: grayscale, bilevel, palette, CMYK (Pillow's plain inversion, no colour
  management) and YCbCr convert directly; 16-bit images are scaled to 8 bits (``round(v /
  257)``); transparency (alpha channel, palette or colour-key transparency) is composited onto
  WHITE, so transparent regions become white rather than whatever colour hides under them.
  Embedded ICC profiles are ignored (values are taken as sRGB, as the original tools do).

Writing (:func:`write_photo`) encodes a fresh image from the array alone, so no EXIF (GPS,
camera, date), ICC profile, XMP or text chunk is ever written; it writes a temporary file in the
destination folder and ``os.replace``-s it into place, and refuses any output path that is (or
is a link to, or a hard link of) an input: the ``inputs`` given and every photo this process
has read with :func:`read_photo`.
"""
from __future__ import annotations

import io
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from jaxprotect.io.errors import (
    AnimatedImageError,
    CorruptPhotoError,
    NotAnImageError,
    OutputIsInputError,
    PhotoNotFoundError,
    PhotoTooLargeError,
    PhotoTooSmallError,
    PhotoWriteError,
    TruncatedPhotoError,
    UnsupportedFormatError,
)

__all__ = [
    "read_photo", "decode_photo", "write_photo", "MAX_PIXELS", "MAX_SIDE", "MIN_SIDE", "FORMATS", "WRITE_FORMATS",
]

MAX_PIXELS = 50_000_000
MAX_SIDE = 20_000
MIN_SIDE = 20
FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP")
WRITE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")

_read_paths: set[str] = set()  # realpaths of every photo read in this process: never written to


def _real(path) -> str:
    return os.path.realpath(os.fspath(path))


def read_photo(path, *, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE,
               min_side: int = MIN_SIDE) -> np.ndarray:
    """Read a photo as ``uint8`` RGB ``[H, W, 3]`` (0..255), upright per its EXIF orientation.

    Raises a :class:`~jaxprotect.io.errors.PhotoError` subclass naming the file for anything
    that is not a usable still photo (see the module docstring for every case and conversion).
    """
    path = Path(path)
    if not path.is_file():
        raise PhotoNotFoundError(path, "no such file" if not path.exists() else "not a regular file")
    with open(path, "rb") as f:
        array = _load(path, f, max_pixels, max_side, min_side)
    _read_paths.add(_real(path))
    return array


def decode_photo(data: bytes, name: str = "<photo bytes>", *, max_pixels: int = MAX_PIXELS,
                 max_side: int = MAX_SIDE, min_side: int = MIN_SIDE) -> np.ndarray:
    """Decode an encoded photo held in memory (e.g. read from a dataset) exactly as :func:`read_photo` would.

    ``data`` is the file's bytes; ``name`` only labels error messages. Returns ``uint8`` RGB
    ``[H, W, 3]`` (0..255), upright per its EXIF orientation; raises the same
    :class:`~jaxprotect.io.errors.PhotoError` subclasses as :func:`read_photo`.
    """
    return _load(name, io.BytesIO(bytes(data)), max_pixels, max_side, min_side)


def _load(path, f, max_pixels, max_side, min_side) -> np.ndarray:
    im = _open(path, f)
    _check_header(path, im, max_pixels, max_side, min_side)
    _decode(path, im)
    im = _upright(im)
    return _to_rgb8(path, im)


def _open(path: Path, f):
    try:
        with warnings.catch_warnings():
            # our own limit (checked next) replaces Pillow's warning band
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(f)
    except Image.DecompressionBombError as e:
        raise PhotoTooLargeError(path, f"header announces a decompression bomb ({e})") from None
    except Image.UnidentifiedImageError:
        raise NotAnImageError(path, "not an image (no JPEG, PNG, WebP, GIF or BMP header found)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise CorruptPhotoError(path, f"unreadable image header ({e})") from None


def _check_header(path: Path, im, max_pixels, max_side, min_side) -> None:
    if im.format not in FORMATS:
        raise UnsupportedFormatError(path, f"{im.format} images are not accepted (use JPEG, PNG or WebP)")
    if getattr(im, "is_animated", False) and im.format != "MPO":
        raise AnimatedImageError(
            path, f"animated {im.format} with {getattr(im, 'n_frames', '?')} frames; save the frame to protect as a still"
        )
    w, h = im.size
    limit = max_pixels if Image.MAX_IMAGE_PIXELS is None else min(max_pixels, Image.MAX_IMAGE_PIXELS)
    if w * h > limit or max(w, h) > max_side:
        raise PhotoTooLargeError(
            path,
            f"header says {w}x{h} ({w * h / 1e6:.1f} megapixels); the limit is {limit / 1e6:g} megapixels and "
            f"{max_side} px a side (guard against decompression bombs); downscale the photo first",
        )
    if min(w, h) < min_side:
        raise PhotoTooSmallError(path, f"{w}x{h} is too small: a side must be at least {min_side} px to hold a face")


def _decode(path: Path, im) -> None:
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if "truncated" in str(e).lower() or isinstance(e, EOFError):
            raise TruncatedPhotoError(path, f"file is truncated: the image data ends early ({e})") from None
        raise CorruptPhotoError(path, f"the image data cannot be decoded ({e})") from None


def _upright(im):
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # an unreadable EXIF block: keep the stored orientation rather than lose the photo
        return im


def _to_rgb8(path: Path, im) -> np.ndarray:
    mode = im.mode
    if mode in _SIXTEEN_BIT:
        wide = np.clip(np.asarray(im, np.int64), 0, 65535)
        gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode == "F":
        raise UnsupportedFormatError(path, "floating-point images are not accepted")
    if mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8, copy=True)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def write_photo(path, image: np.ndarray, *, inputs: Iterable = (), quality: int = 95) -> Path:
    """Write ``image`` [H, W, 3] (uint8, or float 0..255, rounded) to ``path``; returns the path.

    Format from the extension: ``.jpg``/``.jpeg`` (quality ``quality``, 4:4:4 chroma so fine
    perturbations survive), ``.png`` (lossless), ``.webp`` (lossless). No metadata at all is
    written. Atomic: a temporary file in the same folder is renamed over ``path`` only once
    complete, so a failure never leaves a half-written or clobbered file. Raises
    :class:`OutputIsInputError` if ``path`` is any of ``inputs`` or any photo read by
    :func:`read_photo` in this process (also through links), :class:`PhotoWriteError` otherwise.
    """
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise PhotoWriteError(path, f"unknown output extension {path.suffix!r}; use one of {', '.join(WRITE_FORMATS)}")
    target = _real(path)
    protected = _read_paths | {_real(p) for p in inputs}
    if target in protected or (path.exists() and any(_same_file(target, p) for p in protected)):
        raise OutputIsInputError(path, "refusing to write over an input photo; choose another output path")
    if path.is_dir():
        raise PhotoWriteError(path, "is a directory")
    pixels = np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise PhotoWriteError(path, f"image must be [H, W, 3] RGB, got shape {pixels.shape}")
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.rint(pixels.astype(np.float64)), 0, 255).astype(np.uint8)
    fresh = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    options = {"JPEG": {"quality": quality, "subsampling": 0}, "PNG": {}, "WEBP": {"lossless": True}}[fmt]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise PhotoWriteError(path, f"cannot create a file in {path.parent} ({e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            fresh.save(f, format=fmt, **options)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, Exception):
            raise PhotoWriteError(path, f"write failed ({e})") from e
        raise
    return path
