"""``photo_folder``: a local folder of the user's photos, one record per photo, originals kept bit for bit.

This is what dataset-scale ``jaxprotect protect`` jobs read. Split ``photos``; records in sorted
order of ``path``. Fields: ``path`` (posix, relative to the folder), ``image`` (the file's bytes,
untouched: full resolution, metadata and all), ``sha256`` (of those bytes), ``size_bytes``.
Decode with :func:`jaxprotect.datasets.decode_image` (uint8 RGB HWC, as ``read_photo``).

Option ``recursive`` (default False) also reads sub-folders (hidden ones excluded). Photos are
files named ``*.jpg|jpeg|png|webp|gif|bmp`` (any case) not starting with ``.``; whether each one
decodes is checked when it is used, so one bad file never stops a build and is reported by the
job that reads it. Every other file (and, without ``recursive``, each sub-folder) is listed in
``info.metadata["source"]["skipped"]``.
"""
from __future__ import annotations

from pathlib import Path

from jaxprotect.datasets.base import LocalBuilder
from jaxprotect.datasets.errors import ManualDirError
from jaxprotect.datasets.files import list_photos, listing_fingerprint, photo_features, photo_record

__all__ = ["PhotoFolder"]


class PhotoFolder(LocalBuilder, skip_registration=True):
    """A local folder of photos; one record per photo file with its original bytes."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = "manual_dir is the folder of photos to read (option recursive=True for sub-folders)."
    OPTIONS = {"recursive": False}
    SPLITS = {None: "photos"}

    def _features(self):
        return photo_features()

    def _list(self, manual_dir: Path) -> tuple[list[str], list[str]]:
        photos, others = list_photos(manual_dir, recursive=bool(self.options["recursive"]))
        if not photos:
            hint = "" if self.options["recursive"] else " (photos in sub-folders need recursive=True)"
            raise ManualDirError(f"{manual_dir}: no photo (.jpg, .jpeg, .png, .webp, .gif, .bmp) found{hint}")
        return photos, others

    def _describe_files(self, manual_dir: Path) -> dict:
        photos, others = self._list(manual_dir)
        return {"count": len(photos), "files": listing_fingerprint(manual_dir, photos), "skipped": others}

    def _generate_examples(self, manual_dir: Path):
        photos, _ = self._list(manual_dir)
        for rel in photos:
            yield rel, photo_record((manual_dir / rel).read_bytes(), rel)
