"""Read PyTorch ``.pt``/``.pth`` files (and TorchScript archives) into numpy, without torch and
without running any code from the pickle.

The reader replaces :mod:`pickle`'s class lookup with an allow-list of data-only constructors
(tensors, storages, ``OrderedDict``, numpy arrays). Any other global — ``os.system``,
``builtins.eval``, a user class — makes the load fail with :class:`UnsafeCheckpointError`
naming it. TorchScript objects (``__torch__.*``) and ``argparse.Namespace`` are rebuilt as inert
attribute bags, so their tensors can be read but nothing of theirs is executed.

Supported containers: the zip format written by ``torch.save`` since PyTorch 1.6 (and by
``torch.jit.save``), and the legacy format written by PyTorch < 1.6.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import ml_dtypes
import numpy as np
from numpy._core import multiarray as _multiarray

__all__ = ["UnsafeCheckpointError", "ScriptObject", "read_torch_file", "tensors_of"]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The pickle asks for a global outside the data-only allow-list (it would run code)."""


_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class ScriptObject:
    """An inert stand-in for a TorchScript module or any other allowed object with state.

    ``qualname`` is the class the pickle named; attributes come from the pickled state.
    """

    def __init__(self, qualname: str, *args):
        self.qualname = qualname
        self.args = args

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["state"] = state

    def __repr__(self):
        return f"ScriptObject({self.qualname})"


def _script_class(qualname: str):
    class _Factory:
        # pickle's NEWOBJ calls cls.__new__(cls, *args); REDUCE calls cls(*args).
        def __new__(cls, *args):
            return ScriptObject(qualname, *args)

        @staticmethod
        def __reduce__():  # pragma: no cover - never pickled again
            raise TypeError("inert object")

    return _Factory


def _rebuild_tensor(storage, storage_offset, size, stride, *_, **__):
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    if not size:
        return np.array(storage[storage_offset])
    if any(s == 0 for s in size):
        return np.zeros(size, dtype=storage.dtype)
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=size, strides=tuple(s * itemsize for s in stride)
    )
    return np.array(view, copy=True)


def _rebuild_parameter(data, *_):
    return data


def _rebuild_from_type_v2(func, _new_type, args, _state):
    return func(*args)


# numpy's array, dtype and scalar constructors (a pickled ndarray needs nothing else); both old and
# new module paths, as numpy 2 renamed numpy.core
NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


def _ordered_dict(*args):
    return collections.OrderedDict(*args)


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): _ordered_dict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "tuple"): tuple,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("builtins", "slice"): slice,
    ("torch", "Size"): tuple,
    **NUMPY_GLOBALS,
    # TorchScript archives (torch.jit.save) wrap typed attributes (List[int], e.g. LayerNorm's
    # normalized_shape) in these identity functions of torch/jit/_pickle.py.
    ("torch.jit._pickle", "build_intlist"): list,
    ("torch.jit._pickle", "build_tensorlist"): list,
    ("torch.jit._pickle", "build_doublelist"): list,
    ("torch.jit._pickle", "build_boollist"): list,
    ("torch.jit._pickle", "restore_type_tag"): lambda value, _type_str: value,
}
_INERT_MODULE_PREFIXES = ("__torch__",)
_INERT = {("argparse", "Namespace"), ("torch", "device")}


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module.startswith(_INERT_MODULE_PREFIXES) or (module, name) in _INERT:
            return _script_class(f"{module}.{name}")
        raise UnsafeCheckpointError(
            f"refusing to load: the checkpoint's pickle asks for '{module}.{name}', which is not a "
            "tensor or plain container; loading it could run code"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"unexpected persistent id in checkpoint: {pid!r}")
        _, storage_type, key, _location, numel, *_ = pid
        if isinstance(storage_type, _StorageType):
            dtype = storage_type.dtype
        else:
            raise UnsafeCheckpointError(f"unknown storage type in checkpoint: {pid!r}")
        return self._load_storage(str(key), dtype, int(numel))


def _read_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise ValueError(f"{path}: zip archive without data.pkl; not a PyTorch checkpoint")
        root = pkl[0][: -len("data.pkl")]

        def load_storage(key, dtype, numel):
            raw = zf.read(f"{root}data/{key}")
            return np.frombuffer(raw, dtype=dtype, count=numel if dtype.itemsize else -1)

        with zf.open(pkl[0]) as f:
            return _SafeUnpickler(io.BytesIO(f.read()), load_storage).load()


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _read_legacy(path: str) -> Any:
    with open(path, "rb") as f:
        header = _SafeUnpickler(f, None)
        if header.load() != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a PyTorch checkpoint (bad magic number)")
        _protocol = _SafeUnpickler(f, None).load()
        _sys_info = _SafeUnpickler(f, None).load()
        pending: dict[str, tuple[np.dtype, int]] = {}
        arrays: dict[str, np.ndarray] = {}

        def load_storage(key, dtype, numel):
            pending[key] = (dtype, numel)
            return _LazyStorage(key, dtype, arrays)

        obj = _SafeUnpickler(f, load_storage).load()
        keys = _SafeUnpickler(f, None).load()
        for key in keys:
            dtype, _ = pending[key]
            (n,) = struct.unpack("<q", f.read(8))
            arrays[key] = np.frombuffer(f.read(n * dtype.itemsize), dtype=dtype, count=n)
    return _resolve_lazy(obj)


class _LazyStorage:
    """Legacy files put storage bytes after the pickle; tensors are rebuilt once they are read."""

    def __init__(self, key, dtype, arrays):
        self.key, self.dtype, self._arrays = key, dtype, arrays

    def __getitem__(self, item):
        return _LazyView(self, item)


class _LazyView:
    def __init__(self, storage, item):
        self.storage, self.item = storage, item
        self.dtype = storage.dtype


class _LazyTensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)


def _resolve_lazy(obj):
    if isinstance(obj, _LazyTensor):
        storage, offset, size, stride = obj.args
        return _rebuild_tensor(storage._arrays[storage.key], offset, size, stride)
    if isinstance(obj, dict):
        return type(obj)((k, _resolve_lazy(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve_lazy(v) for v in obj)
    if isinstance(obj, ScriptObject):
        obj.__dict__.update({k: _resolve_lazy(v) for k, v in obj.__dict__.items()})
    return obj


_eager_rebuild = _rebuild_tensor


def _rebuild_maybe_lazy(storage, storage_offset, size, stride, *rest, **kw):
    if isinstance(storage, _LazyStorage):
        return _LazyTensor(storage, storage_offset, size, stride)
    return _eager_rebuild(storage, storage_offset, size, stride, *rest, **kw)


_ALLOWED[("torch._utils", "_rebuild_tensor_v2")] = _rebuild_maybe_lazy
_ALLOWED[("torch._utils", "_rebuild_tensor")] = _rebuild_maybe_lazy


def read_torch_file(path: str | os.PathLike) -> Any:
    """Load a ``torch.save`` / ``torch.jit.save`` file as plain Python + numpy objects.

    Takes a path. Returns what the file holds, with every tensor as a numpy array (bf16 as
    ``ml_dtypes.bfloat16``), dicts for ``OrderedDict`` and :class:`ScriptObject` for TorchScript
    modules. Raises :class:`UnsafeCheckpointError` if the pickle names any global that could run
    code; never imports torch.
    """
    path = os.fspath(path)
    if zipfile.is_zipfile(path):
        return _read_zip(path)
    return _read_legacy(path)


def tensors_of(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Flatten nested dicts / ScriptObjects into ``{dotted.key: array}`` (numpy arrays only)."""
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, np.ndarray):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(tensors_of(v, f"{prefix}{k}."))
    elif isinstance(obj, ScriptObject):
        for k, v in obj.__dict__.items():
            if k not in ("qualname", "args"):
                out.update(tensors_of(v, f"{prefix}{k}."))
    return out
