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
