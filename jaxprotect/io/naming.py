"""Where a protected photo's outputs go: one naming rule for every method.

For an input ``photos/alice.jpg`` protected with ``tipim`` into ``OUT/``:

- ``OUT/alice.tipim.png``: the protected photo (``--output-format``);
- ``OUT/alice.tipim.side_by_side.png``: original | protected, labelled;
- ``OUT/alice.tipim.json``: the report.

Two inputs with the same stem (``a/x.jpg`` and ``b/x.png``) both get a suffix made from the path
as given (``x-3f2a9c1e``), so the names never depend on the order of the inputs and are the
same on every run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

__all__ = ["OutputPaths", "output_stems", "output_paths", "write_json"]


@dataclasses.dataclass(frozen=True)
class OutputPaths:
    """The three files of one protected photo."""

    photo: Path
    side_by_side: Path
    report: Path

    def as_dict(self) -> dict:
        """{"photo", "side_by_side", "report"} -> absolute path strings."""
        return {k: os.fspath(Path(v).absolute()) for k, v in dataclasses.asdict(self).items()}


def _stem(path: str) -> str:
    return Path(path).stem or "photo"


def output_stems(paths) -> dict[str, str]:
    """{path: output stem} for the input ``paths`` (as given): the file's stem, with
    ``-<8 hex digits of sha256(path)>`` appended to every stem that two or more inputs share."""
    paths = [os.fspath(p) for p in paths]
    counts: dict[str, int] = {}
    for p in dict.fromkeys(paths):
        counts[_stem(p)] = counts.get(_stem(p), 0) + 1
    out = {}
    for p in paths:
        stem = _stem(p)
        out[p] = stem if counts[stem] == 1 else f"{stem}-{hashlib.sha256(p.encode()).hexdigest()[:8]}"
    return out


def output_paths(out_dir, stem: str, method: str, image_format: str = "png") -> OutputPaths:
    """The :class:`OutputPaths` of a photo with output ``stem`` protected by ``method``."""
    base = Path(out_dir) / f"{stem}.{method}"
    return OutputPaths(Path(f"{base}.{image_format}"), Path(f"{base}.side_by_side.png"), Path(f"{base}.json"))


def write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON atomically (temporary file in the same folder, fsync, rename)."""
    import json

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
