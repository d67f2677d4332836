"""Shared fixtures: golden vectors and the weight rule."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
GOLDEN_LOCAL = HERE / "golden"
SHARED = Path(os.environ.get("JAXPROTECT_SHARED", HERE.parent.parent / "shared"))
GOLDEN_SHARED = SHARED / "golden"
ASSETS = SHARED / "assets"


def golden_path(name: str) -> Path:
    """A golden file: the copy in tests/golden, else ../shared/golden (large files), else skip."""
    for base in (GOLDEN_LOCAL, GOLDEN_SHARED):
        if (base / name).exists():
            return base / name
    pytest.skip(f"golden file {name} is not in tests/golden/ and {GOLDEN_SHARED} is absent (large goldens stay there)")


def load_golden(name: str):
    with np.load(golden_path(name), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def asset_path(relative: str) -> Path:
    """A file under ../shared/assets (real photos and weights), else skip saying so."""
    p = ASSETS / relative
    if not p.exists():
        pytest.skip(f"asset {relative} not available ({ASSETS} is absent)")
    return p


@pytest.fixture
def golden():
    return load_golden
