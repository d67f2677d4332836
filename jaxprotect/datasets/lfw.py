"""``lfw``: Labeled Faces in the Wild from the user's ``lfw.tgz`` (or its extracted folder) and ``pairs.txt``.

Three datasets, one split each, all built from the same ``manual_dir``:

* ``lfw/images`` (split ``images``): every photo, in sorted order of ``path``
  (``<person>/<person>_<nnnn>.jpg``, the archive's top folder dropped). Fields: the photo fields
  (``path``, ``image`` = original bytes, ``sha256``, ``size_bytes``), ``identity`` (the person's
  folder name) and ``label`` (index of the identity in sorted order).
* ``lfw/pairs`` (split ``pairs``): every line of ``pairs.txt`` in file order. The standard file
  starts with ``<folds>\\t<n>`` (``10\\t300``) and has, per fold, n same-person lines
  ``name\\ti\\tj`` then n different-person lines ``name1\\ti\\tname2\\tj``; the single-fold files
  (``pairsDevTrain.txt``/``pairsDevTest.txt``) start with ``<n>``. Fields: ``line`` (1-based line
  number in the file), ``fold`` (0-based), ``same``, ``path1``/``path2`` and ``index1``/``index2``:
  the photos' record indices in ``lfw/images`` (built from the same archive: compare both
  datasets' ``metadata["source"]["images"]``). Pairs hold no pixels, so nothing is stored twice.
* ``lfw/tipim`` (split ``attackers``): TIP-IM's protected photos (``run.py``): it reads the first
  500 lines of ``data/pairs.txt`` as ``name\\tid1\\tid2`` and protects
  ``lfw/{name}/{name}_{id2:04d}.jpg``. That code only runs on a header-less file of same-person
  lines; on the standard ``pairs.txt`` (whose header has two fields, and whose lines 302 onwards
  have four) it stops with a ValueError. Here the rule is "the first ``tipim_count`` (500)
  same-person lines in file order", which is the same list on any file TIP-IM's code can read
  and, on the standard file, fold 1's 300 same-person pairs plus fold 2's first 200. Fields:
  ``line``, ``identity``, ``path``/``index`` (the ``id2`` photo TIP-IM protects) and
  ``other_path``/``other_index`` (the pair's ``id1`` photo of the same person).

Options: ``archive`` (default ``lfw.tgz`` in ``manual_dir``, else the folder ``lfw/``; a ``.tgz``/
``.tar.gz``/``.tar`` or a folder, relative to ``manual_dir`` or absolute; ``lfw-deepfunneled.tgz``
works the same way), ``pairs`` (default ``pairs.txt``), ``tipim_count`` (500). An archive is read
in place, never extracted; reading it holds its photos in memory while ``lfw/images`` is built
(about 180 MB for LFW).
"""
from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from jaxprotect.datasets.base import LocalBuilder
from jaxprotect.datasets.errors import ManualDirError
from jaxprotect.datasets.files import is_photo_name, listing_fingerprint, photo_features, photo_record

__all__ = ["Lfw", "LfwPair", "parse_pairs", "tipim_attackers", "lfw_photo_path"]


class LfwPair(NamedTuple):
    """One line of ``pairs.txt``: ``same`` pairs have ``name1 == name2``."""

    line: int
    fold: int
    same: bool
    name1: str
    num1: int
    name2: str
    num2: int


def lfw_photo_path(name: str, num: int) -> str:
    """``<name>/<name>_<num:04d>.jpg``, LFW's file naming."""
    return f"{name}/{name}_{num:04d}.jpg"


def _ints(fields: list[str]) -> bool:
    return bool(fields) and all(f.isdigit() for f in fields)


def _pair(fields: list[str], line: int, fold: int, source: str) -> LfwPair:
    try:
        if len(fields) == 3:
            return LfwPair(line, fold, True, fields[0], int(fields[1]), fields[0], int(fields[2]))
        if len(fields) == 4:
            return LfwPair(line, fold, False, fields[0], int(fields[1]), fields[2], int(fields[3]))
    except ValueError:
        pass
    raise ManualDirError(f"{source} line {line}: expected 'name i j' or 'name1 i name2 j', got {' '.join(fields)!r}")


def parse_pairs(text: str, source: str = "pairs.txt") -> list[LfwPair]:
    """Every pair of an LFW pairs file (``<folds> <n>`` or ``<n>`` header; see the module docstring).

    Checks the layout (n same-person lines then n different-person lines per fold, nothing more or
    less) and raises :class:`ManualDirError` naming the first line that breaks it.
    """
    lines = text.splitlines()
    if not lines or not _ints(lines[0].split()) or len(lines[0].split()) > 2:
        raise ManualDirError(f"{source} line 1: expected the header '<folds> <n>' or '<n>', got {lines[:1]!r}")
    header = [int(f) for f in lines[0].split()]
    folds, n = (1, header[0]) if len(header) == 1 else header
    body = [(i + 2, ln.split()) for i, ln in enumerate(lines[1:]) if ln.strip()]
    if len(body) != folds * 2 * n:
        raise ManualDirError(
            f"{source}: header announces {folds} fold(s) of {n} + {n} pairs, the file has {len(body)} pairs"
        )
    pairs = []
    for k, (line, fields) in enumerate(body):
        fold, position = divmod(k, 2 * n)
        pair = _pair(fields, line, fold, source)
        if pair.same != (position < n):
            kind = "same-person 'name i j'" if position < n else "different-person 'name1 i name2 j'"
            raise ManualDirError(f"{source} line {line}: fold {fold + 1} expects a {kind} line here")
        pairs.append(pair)
    return pairs


def tipim_attackers(text: str, count: int = 500, source: str = "pairs.txt") -> list[LfwPair]:
    """The first ``count`` same-person lines of a pairs file, in file order (TIP-IM's attackers).

    An all-integer first line (the standard header) is skipped; different-person lines are passed
    over; any other line raises :class:`ManualDirError`. Fewer than ``count`` is fine (TIP-IM's
    ``readlines()[:500]`` also takes what there is).
    """
    chosen = []
    for i, raw in enumerate(text.splitlines()):
        fields = raw.split()
        if not fields or (i == 0 and _ints(fields)):
            continue
        pair = _pair(fields, i + 1, 0, source)
        if pair.same:
            chosen.append(pair)
            if len(chosen) == count:
                break
    return chosen


class _Photos:
    """LFW's photos from an archive or a folder: relative paths (sorted) and their bytes."""

    def __init__(self, location: Path):
        self.location = location
        self.is_archive = location.is_file()
        self.paths, self.skipped = (self._archive_names() if self.is_archive else self._folder_names())

    def _archive_members(self, tar):
        top = None
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if not member.isfile():
                continue
            if len(parts) != 3 or ".." in parts or member.name.startswith("/"):
                yield None, member.name, member
                continue
            if top is None:
                top = parts[0]
            elif parts[0] != top:
                raise ManualDirError(
                    f"{self.location}: more than one top folder ({top}/, {parts[0]}/); not an LFW archive"
                )
            yield f"{parts[1]}/{parts[2]}", member.name, member

    def _archive_names(self):
        paths, skipped = [], []
        with tarfile.open(self.location, "r:*") as tar:
            for rel, name, _ in self._archive_members(tar):
                ok = rel is not None and is_photo_name(rel.split("/")[1])
                (paths.append(rel) if ok else skipped.append(name))
        return sorted(paths), skipped

    def _folder_names(self):
        paths, skipped = [], []
        for person in sorted(os.listdir(self.location)):
            folder = self.location / person
            if not folder.is_dir() or person.startswith("."):
                skipped.append(person)
                continue
            for name in sorted(os.listdir(folder)):
                rel = f"{person}/{name}"
                ok = (folder / name).is_file() and is_photo_name(name)
                (paths.append(rel) if ok else skipped.append(rel))
        return sorted(paths), skipped

    def fingerprint(self) -> dict:
        if self.is_archive:
            st = self.location.stat()
            return {"archive": os.path.realpath(self.location), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                    "count": len(self.paths)}
        return {"folder": os.path.realpath(self.location), "count": len(self.paths),
                "files": listing_fingerprint(self.location, self.paths)}

    def read_all(self):
        """``(path, bytes)`` in sorted path order."""
        if not self.is_archive:
            for rel in self.paths:
                yield rel, (self.location / rel).read_bytes()
            return
        data = {}
        with tarfile.open(self.location, "r:*") as tar:
            for rel, _, member in self._archive_members(tar):
                if rel is not None and is_photo_name(rel.split("/")[1]):
                    data[rel] = tar.extractfile(member).read()
        for rel in self.paths:
            yield rel, data.pop(rel)


class Lfw(LocalBuilder, skip_registration=True):
    """LFW photos, its pairs.txt pairs and TIP-IM's attacker list, from the user's lfw.tgz and pairs.txt."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "manual_dir holds lfw.tgz (or the extracted lfw/ folder; option archive=... for another name, e.g. "
        "lfw-deepfunneled.tgz) and pairs.txt (option pairs=...)."
    )
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="images", description="Every LFW photo, labelled by identity."),
        tfds.core.BuilderConfig(name="pairs", description="The pairs of pairs.txt, as indices into lfw/images."),
        tfds.core.BuilderConfig(name="tipim", description="TIP-IM's attackers: the first 500 same-person pairs."),
    ]
    SPLITS = {"images": "images", "pairs": "pairs", "tipim": "attackers"}
    OPTIONS = {"archive": None, "pairs": "pairs.txt", "tipim_count": 500}
    CONFIG_OPTIONS = {
        "images": ("archive",), "pairs": ("archive", "pairs"), "tipim": ("archive", "pairs", "tipim_count"),
    }

    def _features(self):
        config = self.builder_config.name
        if config == "images":
            return photo_features(identity=tfds.features.Text(), label=tfds.features.Scalar(dtype=np.int64))
        index = tfds.features.Scalar(dtype=np.int64)
        if config == "pairs":
            return tfds.features.FeaturesDict({
                "line": index, "fold": index, "same": tfds.features.Scalar(dtype=np.bool_),
                "path1": tfds.features.Text(), "path2": tfds.features.Text(), "index1": index, "index2": index,
            })
        return tfds.features.FeaturesDict({
            "line": index, "identity": tfds.features.Text(), "path": tfds.features.Text(), "index": index,
            "other_path": tfds.features.Text(), "other_index": index,
        })

    def _location(self, manual_dir: Path) -> Path:
        archive = self.options["archive"]
        if archive is not None:
            location = manual_dir / archive
            if not location.exists():
                raise ManualDirError(f"{location}: no such archive or folder")
            return location
        for default in ("lfw.tgz", "lfw"):
            if (manual_dir / default).exists():
                return manual_dir / default
        raise ManualDirError(f"{manual_dir}: neither lfw.tgz nor an lfw/ folder; pass archive=<name> for another name")

    def _pairs_text(self, manual_dir: Path) -> tuple[Path, str]:
        path = manual_dir / self.options["pairs"]
        if not path.is_file():
            raise ManualDirError(f"{path}: no such file (LFW's pairs.txt is needed for {self.dataset_name})")
        return path, path.read_text(encoding="utf-8")

    def _describe_files(self, manual_dir: Path) -> dict:
        described = {"images": _Photos(self._location(manual_dir)).fingerprint()}
        if self.builder_config.name != "images":
            path, text = self._pairs_text(manual_dir)
            described["pairs"] = {"file": os.path.realpath(path), "sha256": hashlib.sha256(text.encode()).hexdigest()}
        return described

    def _generate_examples(self, manual_dir: Path):
        photos = _Photos(self._location(manual_dir))
        config = self.builder_config.name
        if config == "images":
            identities = sorted({p.split("/")[0] for p in photos.paths})
            label = {ident: i for i, ident in enumerate(identities)}
            for rel, data in photos.read_all():
                ident = rel.split("/")[0]
                yield rel, photo_record(data, rel, identity=ident, label=label[ident])
            return
        index = {p: i for i, p in enumerate(photos.paths)}
        path, text = self._pairs_text(manual_dir)

        def lookup(pair: LfwPair, name: str, num: int) -> tuple[str, int]:
            rel = lfw_photo_path(name, num)
            if rel not in index:
                raise ManualDirError(f"{path} line {pair.line} names {rel}, which is not in {photos.location}")
            return rel, index[rel]

        if config == "pairs":
            for pair in parse_pairs(text, str(path)):
                (p1, i1), (p2, i2) = lookup(pair, pair.name1, pair.num1), lookup(pair, pair.name2, pair.num2)
                yield str(pair.line), {"line": pair.line, "fold": pair.fold, "same": pair.same,
                                       "path1": p1, "path2": p2, "index1": i1, "index2": i2}
            return
        for pair in tipim_attackers(text, int(self.options["tipim_count"]), str(path)):
            (p2, i2), (p1, i1) = lookup(pair, pair.name1, pair.num2), lookup(pair, pair.name1, pair.num1)
            yield str(pair.line), {"line": pair.line, "identity": pair.name1, "path": p2, "index": i2,
                                   "other_path": p1, "other_index": i1}
