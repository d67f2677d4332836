"""Where the tests find their data: golden vectors (tests/golden, else the shared set), the
shared real photos and weights, and the golden tolerance table of tests/golden/README.md."""
from __future__ import annotations

import os

from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent.parent
GOLDEN_LOCAL = TESTS / "golden"
SHARED = Path(os.environ.get("JAXPROTECT_SHARED", TESTS.parent.parent / "shared"))
GOLDEN_SHARED = SHARED / "golden"
ASSETS = SHARED / "assets"


def golden_path(name: str) -> Path:
    """A golden file: the copy in tests/golden, else ../shared/golden (large files), else skip."""
    for base in (GOLDEN_LOCAL, GOLDEN_SHARED):
        if (base / name).exists():
            return base / name
    pytest.skip(f"golden file {name} is not in tests/golden/ and {GOLDEN_SHARED} is absent (large goldens stay there)")


def load_golden(name: str) -> dict:
    """{array name: array} of a golden .npz (read without pickle)."""
    with np.load(golden_path(name), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def asset_path(relative: str) -> Path:
    """A file under ../shared/assets (real photos and weights), else skip saying so."""
    p = ASSETS / relative
    if not p.exists():
        pytest.skip(f"asset {relative} not available ({ASSETS} is absent)")
    return p


def tolerance_table(readme: Path = GOLDEN_LOCAL / "README.md") -> dict:
    """{(golden file, output): (atol, rtol)} from the "Tolerances" table of tests/golden/README.md
    (rows ``| file | output | atol | rtol | ... |``)."""
    text = readme.read_text()
    start = text.index("## Tolerances")
    table = {}
    for line in text[start:].splitlines()[1:]:
        if line.startswith("## "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue
        file, output = cells[0].strip("`"), cells[1].strip("`")
        table[(file, output)] = (float(cells[2]), float(cells[3]))
    if not table:
        raise ValueError(f"no tolerance rows in {readme}")
    return table


def tolerance(file: str, output: str) -> tuple[float, float]:
    """(atol, rtol) of one golden output, as tests/golden/README.md states it."""
    table = tolerance_table()
    if (file, output) not in table:
        raise KeyError(f"tests/golden/README.md has no tolerance row for {file} {output}")
    return table[(file, output)]


__all__ = ["GOLDEN_LOCAL", "GOLDEN_SHARED", "ASSETS", "SHARED", "golden_path", "load_golden", "asset_path",
           "tolerance_table", "tolerance"]
