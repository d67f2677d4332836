"""Every golden output against our code, with the tolerances of the table in tests/golden/README.md.

One test per row of that table (``tests/helpers/parity.py`` computes our side); plus the bookkeeping that
keeps the table complete: every golden file has rows, every row has a producer and every produced output
a row.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from helpers import parity
from helpers.golden import (
    GOLDEN_LOCAL,
    GOLDEN_SHARED,
    ToleranceRow,
    golden_path,
    tolerance,
    tolerance_rows,
)

ROWS = tolerance_rows()


def _is_slow(row: ToleranceRow) -> bool:
    p = parity.PRODUCERS.get((row.file, row.output))
    return p is not None and p.slow


def _param(row: ToleranceRow):
    return pytest.param(row, id=f"{row.file.removesuffix('.npz')}-{row.output}",
                        marks=[pytest.mark.slow] if _is_slow(row) else [])


_NETWORKS_OF = [None]  # the golden whose networks may be cached


@pytest.fixture(autouse=True)
def _one_golden_at_a_time(request):
    """Producers' arrays are cached; the networks a golden's producers built go when the rows reach another file."""
    callspec = getattr(request.node, "callspec", None)
    file = callspec.params["row"].file if callspec is not None and "row" in callspec.params else None
    if file != _NETWORKS_OF[0]:
        parity.release_networks()
        _NETWORKS_OF[0] = file


@pytest.fixture(scope="module", autouse=True)
def _release_golden_clip():
    """The golden-weight CLIP (600 MB) is shared with earlier modules through helpers.clip_helpers; free it here."""
    yield
    from helpers.clip_helpers import golden_clip

    golden_clip.cache_clear()


@pytest.mark.parametrize("row", [_param(r) for r in ROWS])
def test_matches_golden(row: ToleranceRow):
    golden_path(row.file)  # skips naming the file and where it was looked for
    ours, references = parity.result(row.file, row.output)
    assert tuple(references) == row.references, "tests/golden/README.md lists other reference arrays"
    for name, reference in references.items():
        assert np.shape(ours) == np.shape(reference), f"{row.output} {np.shape(ours)} != {name} {np.shape(reference)}"
        np.testing.assert_allclose(ours, reference, atol=row.atol, rtol=row.rtol,
                                   err_msg=f"{row.file}: {row.output} vs {name}")


def test_every_golden_file_has_rows():
    local = {p.name for p in GOLDEN_LOCAL.glob("*.npz")}
    shared = {p.name for p in GOLDEN_SHARED.glob("*.npz")} if GOLDEN_SHARED.is_dir() else set()
    assert local, f"no golden files in {GOLDEN_LOCAL}"
    without = sorted((local | shared) - {row.file for row in ROWS})
    assert not without, f"golden files with no row in the table of tests/golden/README.md: {without}"


def test_rows_and_producers_match():
    table = {(row.file, row.output) for row in ROWS}
    produced = set(parity.PRODUCERS)
    assert not sorted(table - produced), f"rows tests/helpers/parity.py does not produce: {sorted(table - produced)}"
    assert not sorted(produced - table), f"produced outputs with no row (never checked): {sorted(produced - table)}"


def test_slow_rows_say_so():
    wrong = [(r.file, r.output) for r in ROWS if _is_slow(r) != bool(re.search(r"\bslow\b", r.note))]
    assert not wrong, f"the note of these rows must say 'slow' exactly when their producer is slow: {wrong}"


# ---------------------------------------------------------------------------------------------
# the table parser fails loudly

_HEADER = "| file | output | atol | rtol | reference arrays | note |\n|---|---|---|---|---|---|\n"
_ROW = "| `a.npz` | `x` | 1e-5 | 0 | `x`, `x_f64` | a note |\n"


def _readme(tmp_path, body: str):
    path = tmp_path / "README.md"
    path.write_text("# Goldens\n\nText.\n\n## Tolerances\n\nProse.\n\n" + body + "\n## Next\n\n| not | a row |\n")
    return path


def test_parser_reads_rows(tmp_path):
    rows = tolerance_rows(_readme(tmp_path, _HEADER + _ROW + "| `b.npz` | `y` | 0 | 1e-4 | `y` |  |\n"))
    assert rows == [ToleranceRow("a.npz", "x", 1e-5, 0.0, ("x", "x_f64"), "a note"),
                    ToleranceRow("b.npz", "y", 0.0, 1e-4, ("y",), "")]


@pytest.mark.parametrize(
    "body, message",
    [
        ("", "no tolerance rows"),
        ("| file | output | atol | rtol | note |\n|---|---|---|---|---|\n" + _ROW, "expected the header"),
        (_HEADER.splitlines()[0] + "\n" + _ROW, "separator"),
        (_HEADER + "| `a.npz` | `x` | 1e-5 | 0 | `x` |\n", "5 cells, expected 6"),
        (_HEADER + "| a.npz | `x` | 1e-5 | 0 | `x` | |\n", "in backticks"),
        (_HEADER + "| `a.npz` | `x` | tight | 0 | `x` | |\n", "'tight' is not a number"),
        (_HEADER + "| `a.npz` | `x` | -1e-5 | 0 | `x` | |\n", ">= 0"),
        (_HEADER + "| `a.npz` | `x` | 1e-5 | 0 | x, `x_f64` | |\n", "comma-separated"),
        (_HEADER + _ROW + _ROW, "a second row for a.npz x"),
        (_HEADER + _ROW + "\n" + _HEADER + _ROW, "a second table"),
    ],
    ids=["empty", "header", "no-separator", "cells", "backticks", "not-a-number", "negative", "references",
         "duplicate", "second-table"],
)
def test_parser_refuses_malformed_tables(tmp_path, body, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        tolerance_rows(_readme(tmp_path, body))


def test_parser_needs_the_section(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("# Goldens\n\n" + _HEADER + _ROW)
    with pytest.raises(ValueError, match="one '## Tolerances' section"):
        tolerance_rows(path)


def test_missing_row_fails():
    assert tolerance("irse50.npz", "embedding") == (2e-6, 0.0)
    with pytest.raises(KeyError, match="no tolerance row for irse50.npz embedding_l3"):
        tolerance("irse50.npz", "embedding_l3")
    with pytest.raises(KeyError, match="produces no output 'embedding_l3' of golden irse50.npz"):
        parity.result("irse50.npz", "embedding_l3")
