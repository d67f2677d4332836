"""Shared fixtures; the data helpers live in :mod:`helpers.golden`."""
from __future__ import annotations

import pytest

from helpers.golden import load_golden


@pytest.fixture
def golden():
    return load_golden
