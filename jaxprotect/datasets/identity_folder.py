"""``identity_folder``: a flat folder of photos named ``<identity>_<n>.<ext>``, labelled by identity.

For the protocols that need a gallery (FaceCloak's top-n identification, TIP-IM's Rank-k). The
identity is the file name up to its first ``_``, FaceCloak's rule (``src/cloaker.py``:
``basename[:basename.find("_")]``). A photo whose name has no ``_`` is refused (FaceCloak would
silently take the name minus its last character, ``find`` returning -1), as is an empty identity
(a name starting with ``_``).

Split ``photos``; records in sorted order of ``path``. Fields: the photo fields of
``photo_folder`` (``path``, ``image``, ``sha256``, ``size_bytes``) plus ``identity`` (text) and
``label`` (int: the identity's index in the sorted list of identities, stored in
``info.metadata["source"]["identities"]``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from jaxprotect.datasets.base import LocalBuilder
from jaxprotect.datasets.errors import ManualDirError
from jaxprotect.datasets.files import list_photos, listing_fingerprint, photo_features, photo_record

__all__ = ["IdentityFolder", "identity_of"]


def identity_of(file_name: str) -> str:
    """The identity a ``<identity>_<n>.<ext>`` file name stands for (the text before the first ``_``).

    Raises :class:`ManualDirError` when there is no ``_`` or nothing before it.
    """
    cut = file_name.find("_")
    if cut <= 0:
        raise ManualDirError(
            f"{file_name}: not named <identity>_<n>.<ext> "
            + ("(no '_' in the name)" if cut < 0 else "(nothing before the first '_')")
        )
    return file_name[:cut]


class IdentityFolder(LocalBuilder, skip_registration=True):
    """A folder of photos named <identity>_<n>.<ext>, labelled by identity (a gallery)."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = "manual_dir is a flat folder of photos named <identity>_<n>.<ext>."
    SPLITS = {None: "photos"}

    def _features(self):
        return photo_features(identity=tfds.features.Text(), label=tfds.features.Scalar(dtype=np.int64))

    def _labelled(self, manual_dir: Path) -> tuple[list[tuple[str, str]], list[str], list[str]]:
        photos, others = list_photos(manual_dir)
        if not photos:
            raise ManualDirError(f"{manual_dir}: no photo (.jpg, .jpeg, .png, .webp, .gif, .bmp) found")
        bad, labelled = [], []
        for rel in photos:
            try:
                labelled.append((rel, identity_of(rel)))
            except ManualDirError as e:
                bad.append(str(e))
        if bad:
            raise ManualDirError(
                f"{manual_dir}: {len(bad)} photo(s) not named <identity>_<n>.<ext>: " + "; ".join(bad[:5])
            )
        identities = sorted({ident for _, ident in labelled})
        return labelled, identities, others

    def _describe_files(self, manual_dir: Path) -> dict:
        labelled, identities, others = self._labelled(manual_dir)
        paths = [rel for rel, _ in labelled]
        return {"count": len(paths), "files": listing_fingerprint(manual_dir, paths), "identities": identities,
                "skipped": others}

    def _generate_examples(self, manual_dir: Path):
        labelled, identities, _ = self._labelled(manual_dir)
        label = {ident: i for i, ident in enumerate(identities)}
        for rel, ident in labelled:
            yield rel, photo_record((manual_dir / rel).read_bytes(), rel, identity=ident, label=label[ident])
