"""Run one function per photo over many photos, keep going past failures, report at the end.

``report = run_batch(paths, fn)`` calls ``fn(path)`` for each path. A failure (any exception
but ``KeyboardInterrupt``/``SystemExit``) is recorded with its reason and the batch goes on;
each failure is printed when it happens and the summary after the last photo.
``report.exit_code`` is 0 when every photo succeeded, 1 otherwise: a command returns it.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from jaxprotect.io.errors import PhotoError

__all__ = ["BatchItem", "BatchReport", "run_batch"]


@dataclasses.dataclass
class BatchItem:
    """One photo's outcome: ``value`` is what ``fn`` returned; ``error`` the reason it failed."""

    path: str
    ok: bool
    value: Any = None
    error: str | None = None
    error_type: str | None = None


@dataclasses.dataclass
class BatchReport:
    """All outcomes, in input order."""

    items: list[BatchItem] = dataclasses.field(default_factory=list)

    @property
    def succeeded(self) -> list[BatchItem]:
        return [i for i in self.items if i.ok]

    @property
    def failed(self) -> list[BatchItem]:
        return [i for i in self.items if not i.ok]

    @property
    def exit_code(self) -> int:
        """0 if every photo succeeded (or there were none), else 1."""
        return 1 if self.failed else 0

    def summary(self) -> str:
        """A few lines: counts, then one line per failure with its reason."""
        lines = [f"{len(self.items)} photo(s): {len(self.succeeded)} ok, {len(self.failed)} failed"]
        lines += [f"  FAILED {i.path}: [{i.error_type}] {i.error}" for i in self.failed]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """JSON-ready form (``value`` left out: it is whatever ``fn`` returned)."""
        return {
            "ok": [i.path for i in self.succeeded],
            "failed": [{"path": i.path, "error_type": i.error_type, "error": i.error} for i in self.failed],
            "exit_code": self.exit_code,
        }


def _reason(path: str, error: Exception) -> str:
    if isinstance(error, PhotoError):
        return error.reason
    text = str(error)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else (text or type(error).__name__)


def run_batch(paths: Iterable, fn: Callable[[str], Any], *, stream: TextIO | None = None,
              quiet: bool = False) -> BatchReport:
    """Apply ``fn`` to every path; never stop at a failure. Returns a :class:`BatchReport`.

    Failures are printed as they happen and the summary at the end, to ``stream`` (default
    ``sys.stderr``, so a command's stdout stays machine-readable); ``quiet`` prints nothing.
    Set ``JAXPROTECT_DEBUG=1`` to re-raise unexpected (non-:class:`PhotoError`) exceptions.
    """
    out = sys.stderr if stream is None else stream
    report = BatchReport()
    for path in paths:
        path = os.fspath(path)
        try:
            value = fn(path)
        except Exception as error:  # noqa: BLE001 - a batch outlives any one photo's failure
            if os.environ.get("JAXPROTECT_DEBUG") and not isinstance(error, PhotoError):
                raise
            item = BatchItem(path, False, error=_reason(path, error), error_type=type(error).__name__)
            report.items.append(item)
            if not quiet:
                print(f"FAILED {path}: [{item.error_type}] {item.error}", file=out, flush=True)
            continue
        report.items.append(BatchItem(path, True, value=value))
    if not quiet:
        print(report.summary(), file=out, flush=True)
    return report
