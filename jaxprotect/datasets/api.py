"""Build a dataset from the user's files, and read it back: :func:`build`, :func:`load`, :class:`Records`."""
from __future__ import annotations

import os
from pathlib import Path

import tensorflow_datasets as tfds

from jaxprotect.datasets.amtgan import CelebahqAmtgan, Ladn
from jaxprotect.datasets.base import LocalBuilder
from jaxprotect.datasets.errors import ManualDirError, NotBuiltError, SourceChangedError
from jaxprotect.datasets.files import as_text
from jaxprotect.datasets.identity_folder import IdentityFolder
from jaxprotect.datasets.lfw import Lfw
from jaxprotect.datasets.photo_folder import PhotoFolder

__all__ = ["DATASETS", "builder", "build", "load", "Records"]

_BUILDERS: dict[str, type[LocalBuilder]] = {
    cls.name: cls for cls in (PhotoFolder, IdentityFolder, CelebahqAmtgan, Ladn, Lfw)
}
DATASETS: tuple[str, ...] = tuple(
    f"{name}/{config.name}" if cls.BUILDER_CONFIGS else name
    for name, cls in _BUILDERS.items()
    for config in (cls.BUILDER_CONFIGS or [None])
)


def builder(name: str, *, data_dir, **options) -> LocalBuilder:
    """The tfds builder of dataset ``name`` (one of :data:`DATASETS`, e.g. ``"lfw/pairs"``) in ``data_dir``.

    ``options`` are the builder's options (see each builder's docstring); unknown ones raise
    ``TypeError``. Building and reading are :func:`build` and :func:`load`.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    base, _, config = name.partition("/")
    return _BUILDERS[base](data_dir=os.path.expanduser(os.fspath(data_dir)), config=config or None, **options)


def _is_digest(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _differences(stored: dict | None, current: dict) -> str:
    if not stored:
        return "the existing dataset records no source (not built by jaxprotect)"
    keys = sorted(set(stored) | set(current))
    changed = [k for k in keys if stored.get(k) != current.get(k)]
    parts = []
    for k in changed[:4]:
        old, new = stored.get(k), current.get(k)
        if isinstance(old, dict) and isinstance(new, dict):
            sub = [s for s in sorted(set(old) | set(new)) if old.get(s) != new.get(s)]
            parts.append(f"{k} ({', '.join(sub)})")
        elif _is_digest(old) and _is_digest(new):
            parts.append(f"{k}: fingerprint changed (a file was added, removed, renamed or rewritten)")
        else:
            parts.append(f"{k}: {str(old)[:80]} -> {str(new)[:80]}")
    return "; ".join(parts)


def build(name: str, *, manual_dir, data_dir, overwrite: bool = False, **options) -> LocalBuilder:
    """Build dataset ``name`` from the files in ``manual_dir`` into ``data_dir``; returns its builder.

    Writes ``array_record`` files under ``data_dir/<builder>/[<config>/]<version>/``; nothing is
    downloaded and TensorFlow is not used. ``manual_dir`` is only read. If the dataset is already
    built there from the same files and options (``info.metadata["source"]``: paths, options,
    and a fingerprint of the files), it is reused as is; if it was built from other files or
    options, :class:`~jaxprotect.datasets.errors.SourceChangedError` names the difference, and
    ``overwrite=True`` rebuilds it. A missing or misnamed input raises
    :class:`~jaxprotect.datasets.errors.ManualDirError` before anything is written.
    """
    b = builder(name, data_dir=data_dir, **options)
    manual = Path(os.path.expanduser(os.fspath(manual_dir)))
    if not manual.is_dir():
        raise ManualDirError(f"{manual}: no such folder. {b.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    target = os.path.realpath(os.fspath(b.data_path))
    if os.path.commonpath([os.path.realpath(manual), target]) == target:
        raise ManualDirError(f"{manual} lies inside the dataset folder {target}, which a rebuild would replace")
    source = b.describe_source(manual)
    mode = tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    if b.is_prepared():
        stored = dict(b.info.metadata or {}).get("source")
        if stored == source:
            return b
        if not overwrite:
            raise SourceChangedError(
                f"{name} in {target} was built from other files or options than now: {_differences(stored, source)}. "
                "Pass overwrite=True to rebuild it, or use another data_dir."
            )
        mode = tfds.download.GenerateMode.FORCE_REDOWNLOAD
    b.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual), download_mode=mode)
    )
    return b


class Records:
    """Random access to the records of a built dataset split, Text fields as ``str``.

    Wraps ``builder.as_data_source(split)`` (an ``ArrayRecordDataSource``, which gives Text
    fields as UTF-8 ``bytes``): ``len(records)``, ``records[i]`` and ``records.__getitems__(idx)``
    (what grain reads) return plain dicts. ``metadata`` is the dataset's ``info.metadata`` (its
    ``"source"`` says what it was built from). Picklable.
    """

    def __init__(self, source, text_fields: tuple[str, ...] = (), metadata: dict | None = None):
        self.source = source
        self.text_fields = tuple(text_fields)
        self.metadata = dict(metadata or {})

    def __len__(self) -> int:
        return len(self.source)

    def _convert(self, record: dict) -> dict:
        record = dict(record)
        for field in self.text_fields:
            record[field] = as_text(record[field])
        return record

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} out of range for {len(self)} records")
        return self._convert(self.source[index % len(self)])

    def __getitems__(self, indices) -> list[dict]:
        return [self._convert(r) for r in self.source.__getitems__([int(i) for i in indices])]

    def __repr__(self) -> str:
        return f"Records({len(self)} records of {self.metadata.get('source', {}).get('dataset', '?')})"


def load(name: str, *, data_dir, split: str | None = None) -> Records:
    """The records of dataset ``name`` built in ``data_dir`` (its only split unless ``split`` is given).

    Raises :class:`~jaxprotect.datasets.errors.NotBuiltError` if :func:`build` has not been run.
    """
    b = builder(name, data_dir=data_dir)
    if not b.is_prepared():
        raise NotBuiltError(
            f"{name} is not built in {data_dir}; run jaxprotect.datasets.build({name!r}, manual_dir=..., data_dir=...)"
        )
    features = b.info.features
    text = tuple(k for k, f in features.items() if isinstance(f, tfds.features.Text))
    return Records(b.as_data_source(split or b.split_name), text, dict(b.info.metadata or {}))
