"""The user's files as dataset records: listing photos, reading them whole, fingerprinting a source.

Every photo record keeps the file's ORIGINAL bytes (``image``), so a dataset never re-encodes,
resizes or strips anything: decoding (:func:`decode_image`) happens when a record is used, with
the same checks and conversions as :func:`jaxprotect.io.read_photo`.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from jaxprotect.datasets.errors import ManualDirError
from jaxprotect.io.photos import decode_photo

__all__ = [
    "PHOTO_SUFFIXES", "is_photo_name", "photo_features", "photo_record", "list_photos", "decode_image", "sha256_bytes",
    "listing_fingerprint", "read_list_file", "as_text",
]

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


def photo_features(**extra) -> tfds.features.FeaturesDict:
    """Features of one photo record, plus ``extra`` ones: ``path`` (posix path relative to the
    dataset's folder), ``image`` (the file's bytes, untouched), ``sha256`` (hex of those bytes),
    ``size_bytes``. No TensorFlow is needed to write or read these features."""
    return tfds.features.FeaturesDict({
        "path": tfds.features.Text(),
        "image": tfds.features.Tensor(shape=(), dtype=np.object_),
        "sha256": tfds.features.Text(),
        "size_bytes": tfds.features.Scalar(dtype=np.int64),
        **extra,
    })


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def photo_record(data: bytes, path: str, **extra) -> dict:
    """The record of one photo whose file content is ``data`` and relative path ``path``."""
    return {"path": path, "image": data, "sha256": sha256_bytes(data), "size_bytes": len(data), **extra}


def is_photo_name(name: str) -> bool:
    """Whether a file name is a photo's: a suffix of :data:`PHOTO_SUFFIXES` (any case), not hidden (``.name``)."""
    return not name.startswith(".") and name.lower().endswith(PHOTO_SUFFIXES)


def list_photos(folder: Path, *, recursive: bool = False) -> tuple[list[str], list[str]]:
    """``(photos, others)``: posix paths relative to ``folder``, each list sorted.

    Photos are regular files (or links to one) with a suffix in :data:`PHOTO_SUFFIXES` (any case)
    whose name does not start with ``.`` (hidden files, e.g. macOS ``._IMG.jpg`` resource forks,
    are not photos). ``others`` lists every other file seen, so a caller can say what it left
    out; without ``recursive`` it also lists each sub-folder, with a trailing ``/``. With
    ``recursive``, sub-folders are walked too, except hidden ones (``.name``); links to folders are
    not followed.
    """
    folder = Path(folder)
    photos, others = [], []
    if recursive:
        walk = os.walk(folder, followlinks=False)
    else:
        walk = [(str(folder), [], sorted(os.listdir(folder)))]
    for root, dirs, names in walk:
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            full = Path(root) / name
            if not full.is_file():
                if not recursive and full.is_dir():
                    others.append(f"{name}/")
                continue
            rel = full.relative_to(folder).as_posix()
            (photos if is_photo_name(name) else others).append(rel)
    return sorted(photos), sorted(others)


def listing_fingerprint(folder: Path, relpaths: list[str]) -> str:
    """sha256 over (path, size, mtime) of each listed file: changes when a file is added, removed,
    renamed or rewritten. Cheap (one ``stat`` per file, no content read)."""
    h = hashlib.sha256()
    for rel in relpaths:
        st = (Path(folder) / rel).stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def read_list_file(path: Path) -> list[str]:
    """Entries of a user's list file: one relative path per line; blank lines and lines starting
    with ``#`` are ignored; surrounding whitespace is stripped. Raises :class:`ManualDirError` if
    the file is missing, empty, or names an entry twice."""
    path = Path(path)
    if not path.is_file():
        raise ManualDirError(f"list file {path} does not exist")
    entries = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    entries = [e for e in entries if e and not e.startswith("#")]
    if not entries:
        raise ManualDirError(f"list file {path} names no file")
    seen, dup = set(), []
    for e in entries:
        (dup.append(e) if e in seen else seen.add(e))
    if dup:
        raise ManualDirError(f"list file {path} names {len(dup)} entries twice, e.g. {dup[:3]}")
    return entries


def as_text(value) -> str:
    """A Text feature's value as ``str`` (raw ``as_data_source`` records give UTF-8 ``bytes``)."""
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def decode_image(record: dict, *, field: str = "image", name_field: str = "path") -> np.ndarray:
    """Decode a photo record's ``field`` (default ``image``) to ``uint8`` RGB ``[H, W, 3]`` (0..255).

    Same decoder, checks and conversions as :func:`jaxprotect.io.read_photo` (EXIF orientation
    applied, alpha composited on white, size limits; a bad photo raises the same
    :class:`~jaxprotect.io.PhotoError` subclass, labelled with the record's ``name_field``).
    """
    name = as_text(record[name_field]) if name_field in record else "<dataset record>"
    return decode_photo(record[field], name)
