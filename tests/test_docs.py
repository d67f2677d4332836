"""Every fenced code block of README.md and docs/*.md runs as written (issue 16).

Each ```python / ```bash block carries a marker on the line just above it:

- ``<!-- test: run -->``: the test runs it in a fresh temporary folder (python blocks with the
  interpreter running the tests, bash blocks with ``bash -e`` and the environment's ``jaxprotect``
  command on the PATH) and it must succeed;
- ``<!-- test: run setup=NAME[,NAME] -->``: the same after :mod:`helpers.doc_fixtures` ``NAME`` put
  the files the block names into that folder (small stand-ins where the block names a heavy model
  or a user's checkpoint, e.g. rule-weight recognisers under the names users give theirs);
- ``<!-- test: skip REASON -->``: not run here, for the reason given (installing packages, a TPU
  pod, hours of work); ``slow`` blocks run with ``-m slow``: ``<!-- test: slow -->`` (or
  ``<!-- test: slow setup=NAME -->``).

A block without a marker fails the test, so nothing in the documentation goes untested by accident.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)?\s*$")
MARKER = re.compile(r"^<!--\s*test:\s*(run|skip|slow)\b(.*?)-->\s*$")


def blocks():
    """(file, line, language, marker kind, marker argument, code) of every fenced block."""
    out = []
    for path in DOCS:
        if not path.exists():
            continue
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if m and m.group(1):
                start, lang = i, m.group(1)
                j = i + 1
                while j < len(lines) and lines[j].strip() != "```":
                    j += 1
                k = start - 1
                while k >= 0 and not lines[k].strip():
                    k -= 1
                mark = MARKER.match(lines[k].strip()) if k >= 0 else None
                out.append((path.relative_to(ROOT), start + 1, lang, mark.group(1) if mark else None,
                            mark.group(2).strip() if mark else "", "\n".join(lines[start + 1:j])))
                i = j + 1
            else:
                i += 1
    return out


BLOCKS = [b for b in blocks() if b[2] in ("python", "bash", "sh", "console")]


def test_every_block_has_a_marker():
    missing = [f"{f}:{line} ({lang})" for f, line, lang, kind, _, _ in BLOCKS if kind is None]
    assert not missing, "code blocks without a `<!-- test: run|skip REASON|slow -->` marker: " + ", ".join(missing)
    unexplained = [f"{f}:{line}" for f, line, _, kind, arg, _ in BLOCKS if kind == "skip" and len(arg) < 8]
    assert not unexplained, "skipped blocks must say why: " + ", ".join(unexplained)


def _params():
    out = []
    for f, line, lang, kind, arg, code in BLOCKS:
        if kind not in ("run", "slow"):
            continue
        marks = [pytest.mark.slow] if kind == "slow" else []
        out.append(pytest.param(lang, arg, code, id=f"{f}:{line}", marks=marks))
    return out


@pytest.mark.parametrize("lang, arg, code", _params())
def test_block_runs(tmp_path, lang, arg, code):
    from helpers import doc_fixtures

    setup = re.search(r"setup=([\w,]+)", arg)
    for name in (setup.group(1).split(",") if setup else []):
        getattr(doc_fixtures, name)(tmp_path)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.setdefault("JAXPROTECT_XLA_CACHE", "0")
    if lang == "python":
        cmd = [sys.executable, "-c", code]
    else:
        cmd = ["bash", "-e", "-o", "pipefail", "-c", code]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}"
