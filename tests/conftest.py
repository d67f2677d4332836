"""Shared fixtures; the data helpers live in :mod:`helpers.golden`."""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

# One XLA compilation cache for the whole test run, set before JAX is imported and inherited by the processes
# the tests start (documentation blocks, commands): many tests compile the same programs again, and a cached
# one is loaded instead (experiments/results/test_suite.md: -14% of the time on the command-heavy tests). The
# run never writes into the user's own cache (~/.cache/jaxprotect/xla): JAXPROTECT_XLA_CACHE=0.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _xla_cache = tempfile.mkdtemp(prefix="jaxprotect-tests-xla-")
    atexit.register(shutil.rmtree, _xla_cache, True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _xla_cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
os.environ.setdefault("JAXPROTECT_XLA_CACHE", "0")

import pytest  # noqa: E402

from helpers.golden import load_golden  # noqa: E402


@pytest.fixture
def golden():
    return load_golden


@pytest.fixture(scope="module", autouse=True)
def _release_golden_networks():
    """Networks built from the goldens' weights (:func:`helpers.parity.network`) live for one test module."""
    yield
    parity = sys.modules.get("helpers.parity")
    if parity is not None:
        parity.release_networks()
