"""Datasets as evaluation inputs: a built photo dataset's photos written out as files.

``jaxprotect evaluate`` pairs protected files with originals by name, so a dataset given instead of a
folder (``--originals lfw/images --data-dir D``) is materialised once: every record's ORIGINAL
bytes (bit for bit, as the builder stored them) are written under a folder of the report, named by
the record's path with ``/`` replaced by ``__``, and the records' identity labels (datasets that have
them: ``identity_folder``, ``lfw/images``, ``celebahq_amtgan/images``...) go to an identities CSV.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

__all__ = ["is_dataset", "materialise"]


def is_dataset(name: str) -> bool:
    """Whether ``name`` is a dataset name of :data:`jaxprotect.datasets.DATASETS` (and not a folder)."""
    from jaxprotect.datasets import DATASETS

    return name in DATASETS and not Path(name).is_dir()


def materialise(name: str, data_dir, folder) -> tuple[Path, Path | None]:
    """Write the photos of the built dataset ``name`` (in ``data_dir``) into ``folder``; return
    (the folder, the identities CSV or None when the records carry no identity). Records without
    photo bytes (e.g. ``lfw/pairs``) raise ``ValueError``."""
    from jaxprotect.datasets import load

    records = load(name, data_dir=data_dir)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    identities = {}
    for i in range(len(records)):
        rec = records[i]
        if "image" not in rec or "path" not in rec:
            raise ValueError(f"dataset {name} has no photos (its records hold {sorted(rec)}); give its images "
                             "dataset, e.g. lfw/images")
        target = folder / str(rec["path"]).replace("/", "__")
        if not target.exists() or target.stat().st_size != len(rec["image"]):
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.write_bytes(rec["image"])
            os.replace(tmp, target)
        if rec.get("identity"):
            identities[target.name] = str(rec["identity"])
    if not identities:
        return folder, None
    table = folder.parent / f"{folder.name}.identities.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "identity"])
        writer.writerows(sorted(identities.items()))
    return folder, table
