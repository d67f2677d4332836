"""Shared fixtures; the data helpers live in :mod:`helpers.golden`."""
from __future__ import annotations

import sys

import pytest

from helpers.golden import load_golden


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
