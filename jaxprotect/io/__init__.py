"""Photo input/output for users' files: safe reading, metadata-free atomic writing, batches."""
from jaxprotect.io.batch import BatchItem, BatchReport, run_batch
from jaxprotect.io.errors import (
    AnimatedImageError,
    CorruptPhotoError,
    NoFaceError,
    NotAnImageError,
    OutputIsInputError,
    PhotoError,
    PhotoNotFoundError,
    PhotoTooLargeError,
    PhotoTooSmallError,
    PhotoWriteError,
    TruncatedPhotoError,
    UnsupportedFormatError,
)
from jaxprotect.io.photos import decode_photo, read_photo, write_photo

__all__ = [
    "read_photo", "decode_photo", "write_photo", "run_batch", "BatchReport", "BatchItem",
    "PhotoError", "PhotoNotFoundError", "NotAnImageError", "UnsupportedFormatError", "AnimatedImageError",
    "PhotoTooLargeError", "PhotoTooSmallError", "CorruptPhotoError", "TruncatedPhotoError", "NoFaceError",
    "OutputIsInputError", "PhotoWriteError",
]
