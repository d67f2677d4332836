"""Photo input/output for users' files: safe reading, metadata-free atomic writing, batches."""
from jaxprotect.io.batch import BatchItem, BatchReport, run_batch
from jaxprotect.io.errors import *  # noqa: F403 - the PhotoError hierarchy
from jaxprotect.io.errors import __all__ as _errors
from jaxprotect.io.photos import read_photo, write_photo

__all__ = ["read_photo", "write_photo", "run_batch", "BatchReport", "BatchItem", *_errors]
