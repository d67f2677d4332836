"""What a job protects: photo files, folders (``recursive`` to descend), quoted globs, and the
records of a built dataset (:mod:`jaxprotect.datasets`), resolved to one list of
:class:`InputPhoto` with stable ids; and reading one of them as pixels.

- a file is taken as given (a missing or unreadable one fails as that photo, the others go on);
- a folder gives its photo files (:func:`jaxprotect.datasets.files.list_photos`: ``.jpg``,
  ``.jpeg``, ``.png``, ``.webp``, ``.gif``, ``.bmp``, not hidden), sub-folders with ``recursive``;
- an argument with ``*``, ``?`` or ``[`` that is not an existing file is a glob (``**`` matches
  any depth); its photo files are taken and any folder it matches is read as a folder;
- ``dataset``/``data_dir``: every record of a dataset built with :func:`jaxprotect.datasets.build`
  (e.g. ``photo_folder``), read back without TensorFlow.

A folder or glob that gives no photo, or a dataset that is not built, is an :class:`InputError`
(one line naming it) before any work starts. Ids: a file's absolute path; a record's
``dataset:<name>:<record path>``. The same file named twice is one photo.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["InputError", "InputPhoto", "Inputs", "resolve_inputs", "file_fingerprint", "read_input"]

_GLOB_CHARS = set("*?[")


class InputError(ValueError):
    """An input argument that gives no photo (one clear line)."""


@dataclasses.dataclass(frozen=True)
class InputPhoto:
    """One photo of a job: ``id`` (stable key in the manifest), ``name`` (shown in messages and
    reports: the file path, or ``dataset:<name>:<path>``), ``source`` "file" or "dataset", and
    for a dataset record its ``index`` and ``sha256`` (of the original file bytes)."""

    id: str
    name: str
    source: str
    index: int | None = None
    sha256: str | None = None

    @property
    def label(self) -> str:
        """The file or record name without folders (what output stems are made from)."""
        return self.name.rsplit(":", 1)[-1] if self.source == "dataset" else self.name


@dataclasses.dataclass
class Inputs:
    """Resolved inputs: ``photos`` the files in order (arguments in the order given; a folder's
    or glob's photos sorted); ``dataset`` {"name", "data_dir", "fingerprint"} when one was given
    and ``records`` its records (random access; :meth:`dataset_photos` lists them, which reads
    every record once, so a job does it only when its manifest does not know the dataset yet);
    ``notes``: one line per argument saying what it gave."""

    photos: list
    dataset: dict | None = None
    records: object = None
    notes: list = dataclasses.field(default_factory=list)

    def dataset_photos(self) -> list:
        """One :class:`InputPhoto` per record of the dataset, in record order (none without one)."""
        if self.records is None:
            return []
        from jaxprotect.datasets.files import as_text

        name = self.dataset["name"]
        out = []
        for i in range(len(self.records)):
            rec = self.records.source[i]
            label = f"dataset:{name}:{as_text(rec['path'])}"
            out.append(InputPhoto(label, label, "dataset", i, as_text(rec["sha256"])))
        return out


def _is_glob(arg: str) -> bool:
    return any(c in arg for c in _GLOB_CHARS) and not os.path.exists(arg)


def _folder_photos(folder: Path, recursive: bool) -> tuple[list[str], list[str]]:
    from jaxprotect.datasets.files import list_photos

    rel, others = list_photos(folder, recursive=recursive)
    return [os.path.join(os.path.abspath(folder), r) for r in rel], others


def _file(path: str) -> InputPhoto:
    full = os.path.abspath(path)
    return InputPhoto(full, path, "file")


def resolve_inputs(args: Sequence[str], *, recursive: bool = False, dataset: str | None = None,
                   data_dir: str | None = None) -> Inputs:
    """Every photo named by ``args`` (files, folders, globs) and by ``dataset`` in ``data_dir``;
    see the module docstring. Raises :class:`InputError` for an argument that gives no photo."""
    from jaxprotect.datasets.files import is_photo_name

    photos: list[InputPhoto] = []
    notes: list[str] = []
    for arg in args:
        arg = os.fspath(arg)
        if os.path.isdir(arg):
            found, others = _folder_photos(Path(arg), recursive)
            if not found:
                hint = "" if recursive else " (photos in sub-folders need --recursive)"
                raise InputError(f"folder {arg} has no photo (.jpg, .jpeg, .png, .webp, .gif, .bmp){hint}")
            subdirs = [o for o in others if o.endswith("/")]
            note = f"{arg}: {len(found)} photos"
            if subdirs and not recursive:
                note += f" ({len(subdirs)} sub-folders not read: --recursive reads them)"
            notes.append(note)
            photos += [InputPhoto(p, p, "file") for p in found]
        elif _is_glob(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            files = [m for m in matches if os.path.isfile(m) and is_photo_name(os.path.basename(m))]
            for m in matches:
                if os.path.isdir(m):
                    files += _folder_photos(Path(m), recursive)[0]
            if not files:
                raise InputError(f"no photo matches {arg!r}")
            notes.append(f"{arg}: {len(files)} photos")
            photos += [_file(f) for f in files]
        else:
            photos.append(_file(arg))
    out = Inputs(photos, notes=notes)
    if dataset is not None:
        _add_dataset(out, dataset, data_dir)
    elif data_dir is not None:
        raise InputError("--data-dir needs --dataset NAME")
    seen: set = set()
    unique = []
    for p in out.photos:
        if p.id not in seen:
            seen.add(p.id)
            unique.append(p)
    out.photos = unique
    if not out.photos and out.records is None:
        raise InputError("no input photo: give files, folders, globs or --dataset NAME --data-dir DIR")
    return out


def _add_dataset(out: Inputs, name: str, data_dir: str | None) -> None:
    from jaxprotect import datasets

    if data_dir is None:
        raise InputError(f"--dataset {name} needs --data-dir DIR (where it was built)")
    try:
        records = datasets.load(name, data_dir=data_dir)
    except (datasets.DatasetError, ValueError) as e:
        raise InputError(str(e)) from None
    if not len(records):
        raise InputError(f"dataset {name} in {data_dir} has no record")
    if "image" not in records[0] or "path" not in records[0]:
        raise InputError(f"dataset {name} has no photo records (fields 'path' and 'image'); use photo_folder")
    import json

    source = json.dumps(records.metadata.get("source"), sort_keys=True, default=str)
    out.dataset = {"name": name, "data_dir": os.path.abspath(os.path.expanduser(data_dir)), "records": len(records),
                   "fingerprint": hashlib.sha256(source.encode()).hexdigest()}
    out.records = records
    out.notes.append(f"dataset {name} in {data_dir}: {len(records)} photos")


def file_fingerprint(path: str) -> dict:
    """{"sha256", "size", "mtime_ns"} of a file (``sha256`` None, with "error", when it cannot be read)."""
    try:
        st = os.stat(path)
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return {"sha256": h.hexdigest(), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError as e:
        return {"sha256": None, "size": None, "mtime_ns": None, "error": e.strerror or str(e)}


def read_input(photo: InputPhoto, records=None) -> np.ndarray:
    """The pixels of ``photo``: uint8 RGB [H, W, 3] (EXIF orientation applied), read with
    :func:`jaxprotect.io.read_photo` or decoded from its dataset record. Raises
    :class:`jaxprotect.io.PhotoError` for a photo that cannot be read."""
    if photo.source == "dataset":
        from jaxprotect.io.photos import decode_photo

        return decode_photo(records[photo.index]["image"], photo.name)
    from jaxprotect.io import read_photo

    return read_photo(photo.name)
