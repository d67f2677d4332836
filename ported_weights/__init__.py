"""Converted weights that jaxprotect may ship, their licences, the converters that made them, and
the manifest of every upstream checkpoint users bring themselves (``manifest.toml``)."""
from __future__ import annotations

from pathlib import Path

DIRECTORY = Path(__file__).parent


def shipped(filename: str) -> Path:
    """Path of a shipped converted-weights file in this folder; raises if it is missing."""
    path = DIRECTORY / filename
    if not path.exists():
        raise FileNotFoundError(f"shipped weights {filename} missing from {DIRECTORY}; reinstall jaxprotect")
    return path


def sha256_file(path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
