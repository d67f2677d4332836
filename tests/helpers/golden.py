"""Where the tests find their data: golden vectors (tests/golden, else the shared set), the
shared real photos and weights, and the golden tolerance table of tests/golden/README.md."""
from __future__ import annotations

import dataclasses
import math
import os
import re
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
    pytest.skip(f"golden file {name} is in neither {GOLDEN_LOCAL} nor {GOLDEN_SHARED} (large goldens stay in the "
                "shared set; set JAXPROTECT_SHARED to its folder)")


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


TOLERANCE_HEADER = ("file", "output", "atol", "rtol", "reference arrays", "note")
_SEPARATOR = re.compile(r"^:?-{3,}:?$")
_FILE = re.compile(r"^`([^`]+\.npz)`$")
_NAME = re.compile(r"^`([^`]+)`$")


@dataclasses.dataclass(frozen=True)
class ToleranceRow:
    """One row of the "Tolerances" table: ``output`` of golden ``file`` must match each of ``references``."""

    file: str
    output: str
    atol: float
    rtol: float
    references: tuple[str, ...]
    note: str


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().removeprefix("|").removesuffix("|").split("|")]


def _tolerance(cell: str, where: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"{where}: tolerance {cell!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: tolerance {cell!r} must be finite and >= 0")
    return value


def _row(cells: list[str], where: str) -> ToleranceRow:
    if len(cells) != len(TOLERANCE_HEADER):
        raise ValueError(f"{where}: {len(cells)} cells, expected {len(TOLERANCE_HEADER)} "
                         f"({' | '.join(TOLERANCE_HEADER)})")
    file, output = _FILE.match(cells[0]), _NAME.match(cells[1])
    if not file or not output:
        raise ValueError(f"{where}: file and output must be `name.npz` and `name` in backticks")
    references = tuple(_NAME.match(c.strip()) for c in cells[4].split(","))
    if not all(references):
        raise ValueError(f"{where}: reference arrays must be a comma-separated list of `names` in backticks")
    return ToleranceRow(file.group(1), output.group(1), _tolerance(cells[2], where), _tolerance(cells[3], where),
                        tuple(m.group(1) for m in references), cells[5])


def tolerance_rows(readme: Path = GOLDEN_LOCAL / "README.md") -> list[ToleranceRow]:
    """The rows of the one table in the "## Tolerances" section of tests/golden/README.md, in order.

    The section holds prose and exactly one table: the header ``| file | output | atol | rtol | reference
    arrays | note |``, its separator, then rows. Anything else that looks like a table line, a malformed
    row or a repeated (file, output) raises ValueError naming the line.
    """
    lines = readme.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "## Tolerances"]
    if len(starts) != 1:
        raise ValueError(f"{readme}: expected one '## Tolerances' section, found {len(starts)}")
    rows, seen, state = [], set(), "before"  # before -> header -> separator -> rows -> after
    for number in range(starts[0] + 1, len(lines)):
        line = lines[number].strip()
        if line.startswith("#"):
            break
        where = f"{readme.name} line {number + 1}"
        if not line.startswith("|"):
            state = "after" if state == "rows" else state
            if state not in ("before", "after"):
                raise ValueError(f"{where}: the tolerance table stops before its first row")
            continue
        cells = _cells(line)
        if state == "before":
            if tuple(cells) != TOLERANCE_HEADER:
                raise ValueError(f"{where}: expected the header | {' | '.join(TOLERANCE_HEADER)} |, got {line}")
            state = "header"
        elif state == "header":
            if len(cells) != len(TOLERANCE_HEADER) or not all(_SEPARATOR.match(c) for c in cells):
                raise ValueError(f"{where}: expected the table's separator line, got {line}")
            state = "rows"
        elif state == "rows":
            row = _row(cells, where)
            if (row.file, row.output) in seen:
                raise ValueError(f"{where}: a second row for {row.file} {row.output}")
            seen.add((row.file, row.output))
            rows.append(row)
        else:
            raise ValueError(f"{where}: a second table in the Tolerances section")
    if not rows:
        raise ValueError(f"no tolerance rows in {readme}")
    return rows


def tolerance_table(readme: Path = GOLDEN_LOCAL / "README.md") -> dict:
    """{(golden file, output): (atol, rtol)} from the "Tolerances" table of tests/golden/README.md."""
    return {(r.file, r.output): (r.atol, r.rtol) for r in tolerance_rows(readme)}


def tolerance(file: str, output: str) -> tuple[float, float]:
    """(atol, rtol) of one golden output, as tests/golden/README.md states it; KeyError if it has no row."""
    table = tolerance_table()
    if (file, output) not in table:
        raise KeyError(f"tests/golden/README.md has no tolerance row for {file} {output}")
    return table[(file, output)]


__all__ = ["GOLDEN_LOCAL", "GOLDEN_SHARED", "ASSETS", "SHARED", "golden_path", "load_golden", "asset_path",
           "ToleranceRow", "tolerance_rows", "tolerance_table", "tolerance"]
