"""Errors for one photo: each names the file and says what is wrong in words a user can act on.

Every class derives from :class:`PhotoError`, so a batch can catch that one class, record the
message and go on with the next photo (see :func:`jaxprotect.io.batch.run_batch`).
"""
from __future__ import annotations

import os

__all__ = [
    "PhotoError",
    "PhotoNotFoundError",
    "NotAnImageError",
    "UnsupportedFormatError",
    "AnimatedImageError",
    "PhotoTooLargeError",
    "PhotoTooSmallError",
    "TruncatedPhotoError",
    "CorruptPhotoError",
    "NoFaceError",
    "OutputIsInputError",
    "PhotoWriteError",
]


class PhotoError(Exception):
    """A photo could not be used. ``path`` is the file; the message starts with it."""

    def __init__(self, path, reason: str):
        self.path = os.fspath(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class PhotoNotFoundError(PhotoError, FileNotFoundError):
    """The path does not exist or is not a regular file."""


class NotAnImageError(PhotoError):
    """The file is not an image any decoder recognises (e.g. a text file named ``.jpg``)."""


class UnsupportedFormatError(PhotoError):
    """An image, but in a format jaxprotect does not accept (accepted: JPEG, PNG, WebP, still GIF, BMP)."""


class AnimatedImageError(PhotoError):
    """An animation (GIF, APNG, animated WebP): refused, since protecting one frame would leave the others."""


class PhotoTooLargeError(PhotoError):
    """The header announces more pixels or a longer side than allowed (decompression-bomb guard)."""


class PhotoTooSmallError(PhotoError):
    """Too small to hold a detectable face."""


class CorruptPhotoError(PhotoError):
    """The decoder failed on the pixel data."""


class TruncatedPhotoError(CorruptPhotoError):
    """The file ends before the image data does."""


class NoFaceError(PhotoError):
    """No face was detected in the photo."""


class OutputIsInputError(PhotoError):
    """An output path resolves to an input photo; inputs are never overwritten."""


class PhotoWriteError(PhotoError):
    """The output could not be written (unknown extension, unwritable folder...)."""
