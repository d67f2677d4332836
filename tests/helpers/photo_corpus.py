"""Bad and awkward photo files, generated on the fly for the photo-I/O and ``faces`` command tests."""
from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def astronaut() -> np.ndarray:
    """skimage's public-domain astronaut portrait, [512, 512, 3] uint8 (one face)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def smooth(h: int = 96, w: int = 128) -> np.ndarray:
    """A smooth colour ramp [h, w, 3] uint8 (no face, compresses well)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy * 255 // h, xx * 255 // w, 255 - yy * 255 // h], axis=-1).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, depth: int, colour_type: int, raw_rows: bytes) -> bytes:
    """A PNG written by hand (so the IHDR can claim any size): signature, IHDR, one IDAT, IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw_rows)) + _chunk(b"IEND", b"")


def write_rgb16_png(path: Path, rgb8: np.ndarray) -> np.ndarray:
    """Write ``rgb8`` as a 48-bit (16 bits per channel) PNG; returns the 16-bit values written."""
    wide = rgb8.astype(np.uint16) * 257 + (rgb8 < 255)  # not an exact multiple of 257 below white
    rows = b"".join(b"\x00" + wide[y].astype(">u2").tobytes() for y in range(wide.shape[0]))
    path.write_bytes(png_bytes(wide.shape[1], wide.shape[0], 16, 2, rows))
    return wide


def make_bad_corpus(folder: Path, face: np.ndarray) -> dict[str, str]:
    """Write the issue's bad-input corpus into ``folder``; returns {file name: expected outcome}.

    The outcome is the PhotoError subclass name, or ``"face"`` for files that are converted
    (CMYK, 16-bit, alpha) and then hold ``face``'s face.
    """
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(face).save(folder / "good.jpg", quality=92)
    whole = (folder / "good.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.jpg").write_text("this is a text file, not a photo\n")
    Image.fromarray(face[:1, :1]).save(folder / "tiny.png")
    Image.fromarray(smooth()).save(folder / "noface.png")
    (folder / "bomb.png").write_bytes(png_bytes(50000, 50000, 8, 2, b"\x00" * 64))
    Image.fromarray(face).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    write_rgb16_png(folder / "deep16.png", face)
    alpha = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    alpha[:40] = 0  # a fully transparent band on top
    Image.fromarray(alpha, "RGBA").save(folder / "alpha.png")
    frames = [Image.fromarray(face), Image.fromarray(face[::-1].copy())]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return {
        "good.jpg": "face",
        "truncated.jpg": "TruncatedPhotoError",
        "notes.jpg": "NotAnImageError",
        "tiny.png": "PhotoTooSmallError",
        "noface.png": "NoFaceError",
        "bomb.png": "PhotoTooLargeError",
        "cmyk.jpg": "face",
        "deep16.png": "face",
        "alpha.png": "face",
        "anim.gif": "AnimatedImageError",
    }


def placed_face(scale: float, angle: float, centre, size: int = 112):
    """Landmarks [5, 2] and an MTCNN-like box [4] (x1, y1, x2, y2, pixels) of a face: the ArcFace
    template of ``size`` scaled by ``scale``, turned by ``angle`` radians and centred at ``centre``."""
    from jaxprotect.detect.align import template

    c, s = math.cos(angle), math.sin(angle)
    rot = scale * np.array([[c, -s], [s, c]])
    pts = (template(size) - size / 2) @ rot.T + np.asarray(centre, np.float64)
    half = 0.5 * scale * size * np.array([0.75, 0.95])
    box = np.array([centre[0] - half[0], centre[1] - half[1] * 1.05, centre[0] + half[0], centre[1] + half[1]])
    return pts, box
