"""Which protected photo belongs to which original, target and identity: the name rules.

Rules (documented in the report and in docs/evaluation.md):

* **Photos in a folder**: files (not recursive) whose suffix is a photo suffix (``.jpg .jpeg .png
  .webp .bmp .gif``), sorted by name. In a protected folder, files whose stem ends with
  ``side_by_side`` or ``.original`` (what ``jaxprotect protect`` / ``demo`` write beside the
  protected photo) are listed as skipped, not evaluated.
* **Protected -> original**: first an explicit mapping file (``--mapping``), then the name rule: the
  protected file's stem (name without its last suffix) and every prefix of it that ends just before
  a ``.``, ``_`` or ``-`` are tried, LONGEST first, against the originals' stems. So
  ``img1.protected.png`` -> ``img1.jpg``; ``Aaron_Peirsol_0001_clip2protect.png`` ->
  ``Aaron_Peirsol_0001.jpg`` (not a shorter ``Aaron.jpg``); ``085807_00012.jpg`` -> ``085807.png``;
  ``ada-12.png`` -> ``ada.jpg``. A protected file that matches nothing is reported as unmatched.
* **Mapping file**: CSV with a header row holding ``protected`` and ``original`` (optional
  ``target``) columns, or JSON: either ``{"protected name": "original name"}`` or a list of objects
  with those keys. Names are file names inside the folders (or paths relative to them).
* **Identity of an unprotected photo**: an identities file (``--identities``, CSV ``file,identity``
  or JSON ``{file: identity}``) first; else the LFW-style name rule ``<identity>_<digits>``
  (``Aaron_Peirsol_0001`` -> ``Aaron_Peirsol``); else the photo is its own identity (every photo a
  different person), which the report flags, because same-person photos would then be counted
  as different-person pairs when thresholds are calibrated.
* **Target of a protected photo** (impersonation): the mapping file's ``target`` column; else, when
  the targets folder holds exactly one photo, that photo for every protected photo.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

__all__ = [
    "PHOTO_SUFFIXES",
    "SKIPPED_MARKERS",
    "Pairing",
    "list_photos",
    "stem_candidates",
    "pair_protected",
    "read_mapping",
    "read_identities",
    "identity_of",
    "NAME_RULE",
]

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
SKIPPED_MARKERS = ("side_by_side", ".original")
NAME_RULE = ("protected stem and its prefixes ending before '.', '_' or '-', longest first, "
             "matched against the originals' stems; mapping file entries take precedence")
_SEPARATORS = ".-_"
_LFW_IDENTITY = re.compile(r"^(.+)_(\d+)$")


@dataclasses.dataclass
class Pairing:
    """``pairs``: (protected path, original path, target path or None); ``unmatched``: protected
    files with no original (with the reason); ``skipped``: files of the protected folder that are
    not protected photos; ``unprotected``: originals no protected file points to; ``how``:
    protected path -> "mapping" or "name rule"."""

    pairs: list
    unmatched: list
    skipped: list
    unprotected: list
    how: dict


def list_photos(folder, *, skip_markers: bool = False) -> tuple[list[Path], list[Path]]:
    """``(photos, skipped)`` of ``folder``: photo files sorted by name (see the module rules)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    photos, skipped = [], []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.suffix.lower() not in PHOTO_SUFFIXES:
            continue
        if skip_markers and p.stem.endswith(SKIPPED_MARKERS):
            skipped.append(p)
        else:
            photos.append(p)
    return photos, skipped


def stem_candidates(name: str) -> list[str]:
    """The file's stem and its prefixes ending before a separator, longest first."""
    stem = Path(name).stem
    out = [stem]
    for i in range(len(stem) - 1, 0, -1):
        if stem[i] in _SEPARATORS and stem[:i] not in out:
            out.append(stem[:i])
    return out


def _resolve(folder: Path, name: str, what: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"mapping file names {what} {name!r}, which is not a file in {folder}")
    return path


def read_mapping(path) -> list[dict]:
    """Rows ``{"protected", "original"[, "target"]}`` of a CSV or JSON mapping file (see module rules)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            rows = [{"protected": k, "original": v} for k, v in data.items()]
        elif isinstance(data, list) and all(isinstance(r, dict) for r in data):
            rows = data
        else:
            raise ValueError(f"{path}: JSON mapping must be an object or a list of objects")
    else:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        if not row.get("protected") or not row.get("original"):
            raise ValueError(f"{path}: row {i + 1} lacks 'protected' or 'original': {row}")
    return [{k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()} for row in rows]


def pair_protected(protected_dir, originals_dir, targets_dir=None, mapping=None) -> Pairing:
    """Pair every photo of ``protected_dir`` with its original (and target) by the module's rules."""
    protected_dir, originals_dir = Path(protected_dir), Path(originals_dir)
    protected, skipped = list_photos(protected_dir, skip_markers=True)
    originals, _ = list_photos(originals_dir)
    targets = list_photos(targets_dir)[0] if targets_dir is not None else []
    by_stem: dict[str, Path] = {}
    for p in originals:
        if p.stem in by_stem:
            raise ValueError(f"two originals share the stem {p.stem!r}: {by_stem[p.stem].name}, {p.name}; "
                             "pair them with a mapping file")
        by_stem[p.stem] = p
    explicit = {}
    for row in read_mapping(mapping) if mapping is not None else []:
        prot = _resolve(protected_dir, row["protected"], "protected photo")
        orig = _resolve(originals_dir, row["original"], "original")
        target = None
        if row.get("target"):
            if targets_dir is None:
                raise ValueError("the mapping file names targets but no targets folder was given")
            target = _resolve(Path(targets_dir), row["target"], "target")
        explicit[prot.resolve()] = (orig, target)
    single_target = targets[0] if len(targets) == 1 else None
    pairs, unmatched, how = [], [], {}
    for p in protected:
        if p.resolve() in explicit:
            orig, target = explicit[p.resolve()]
            pairs.append((p, orig, target if target is not None else single_target))
            how[p] = "mapping"
            continue
        match = next((by_stem[c] for c in stem_candidates(p.name) if c in by_stem), None)
        if match is None:
            unmatched.append((p, f"no original stem among {stem_candidates(p.name)}"))
            continue
        pairs.append((p, match, single_target))
        how[p] = "name rule"
    used = {o.resolve() for _, o, _ in pairs}
    unprotected = [o for o in originals if o.resolve() not in used]
    return Pairing(pairs, unmatched, skipped, unprotected, how)


def read_identities(path) -> dict[str, str]:
    """``{file name: identity}`` from a CSV (``file,identity`` header) or JSON object."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{path}: JSON identities must be an object {{file: identity}}")
        return {str(k): str(v) for k, v in data.items()}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"file", "identity"} <= set(rows[0]):
        raise ValueError(f"{path}: CSV identities need the header 'file,identity'")
    return {r["file"].strip(): r["identity"].strip() for r in rows}


def identity_of(path, identities: dict[str, str] | None = None) -> tuple[str, str]:
    """``(identity, rule)`` of an unprotected photo; rule is "identities file", "name rule" or "own file"."""
    path = Path(path)
    if identities:
        for key in (path.name, path.stem):
            if key in identities:
                return identities[key], "identities file"
    m = _LFW_IDENTITY.match(path.stem)
    if m:
        return m.group(1), "name rule"
    return path.stem, "own file"
