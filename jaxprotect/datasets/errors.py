"""Errors raised while building or reading a jaxprotect dataset; each says what to do about it."""
from __future__ import annotations

__all__ = ["DatasetError", "ManualDirError", "SourceChangedError", "NotBuiltError"]


class DatasetError(Exception):
    """A dataset could not be built or read."""


class ManualDirError(DatasetError):
    """The user's files (``manual_dir``, a list file, an archive) are missing or not laid out as documented."""


class SourceChangedError(DatasetError):
    """A dataset already built in ``data_dir`` came from other files or options than the ones given now."""


class NotBuiltError(DatasetError):
    """:func:`jaxprotect.datasets.load` was asked for a dataset that has not been built in ``data_dir``."""
