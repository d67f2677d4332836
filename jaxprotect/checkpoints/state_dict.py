"""State dicts as flat ``{dotted.key: numpy array}`` mappings: loading, strict key checks, caching.

Every network in jaxprotect keeps its parameters in the source checkpoint's names, shapes and
units, nested on the dots of the PyTorch keys (``body.3.res_layer.1.weight`` becomes
``params["body"]["3"]["res_layer"]["1"]["weight"]``). A converter therefore only selects,
validates and (rarely) transposes; :func:`check_keys` makes every load all-or-nothing.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Iterable
from typing import Any

import numpy as np

from jaxprotect.checkpoints.torch_pickle import read_torch_file, tensors_of

__all__ = [
    "CheckpointKeyError",
    "load_state_dict",
    "check_keys",
    "unflatten",
    "flatten",
    "save_flat",
    "load_flat",
    "CACHE_SUFFIXES",
]

CACHE_SUFFIXES = (".npz", ".safetensors")


class CheckpointKeyError(KeyError):
    """A checkpoint's keys or shapes do not match the network; the message names every offender."""

    def __str__(self):  # KeyError quotes its argument; keep the message readable
        return str(self.args[0])


def load_state_dict(checkpoint: str | os.PathLike | Mapping[str, Any], *, prefix: str = "") -> dict[str, np.ndarray]:
    """Read a checkpoint into a flat ``{key: np.ndarray}`` dict.

    ``checkpoint`` is a path (``.pt``/``.pth`` torch file, TorchScript archive, or a converted
    ``.npz``/``.safetensors`` cache) or a mapping of keys to arrays (numpy, jax or torch tensors).
    Nested dicts are flattened with dots. With ``prefix`` (e.g. ``"g_ema."``), only the keys
    under it are kept, with the prefix removed. Never executes pickled code.
    """
    if isinstance(checkpoint, Mapping):
        flat = {str(k): _to_numpy(v) for k, v in _flatten_mapping(checkpoint).items()}
    else:
        path = os.fspath(checkpoint)
        if not os.path.exists(path):
            raise FileNotFoundError(f"checkpoint not found: {path}")
        if path.endswith(CACHE_SUFFIXES):
            flat = load_flat(path)
        else:
            flat = tensors_of(read_torch_file(path))
    if prefix:
        flat = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
    return flat


def _flatten_mapping(m: Mapping, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in m.items():
        if isinstance(v, Mapping):
            out.update(_flatten_mapping(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _to_numpy(v) -> np.ndarray:
    if hasattr(v, "detach"):  # a torch tensor, handed over by a user who has torch
        v = v.detach().cpu().numpy()
    return np.asarray(v)


def check_keys(
    given: Mapping[str, np.ndarray],
    expected: Mapping[str, tuple[int, ...]],
    *,
    what: str = "checkpoint",
    ignore_suffixes: Iterable[str] = ("num_batches_tracked",),
) -> dict[str, np.ndarray]:
    """Return ``{key: float32 array}`` for exactly the ``expected`` keys, or raise.

    Raises :class:`CheckpointKeyError` naming every missing key, every unexpected key and every
    shape mismatch. Keys ending in one of ``ignore_suffixes`` (integer BN counters) are dropped.
    """
    ignore = tuple(ignore_suffixes)
    given = {k: v for k, v in given.items() if not k.endswith(ignore)}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = sorted(
        f"{k}: checkpoint {tuple(given[k].shape)} != expected {tuple(expected[k])}"
        for k in set(given) & set(expected)
        if tuple(given[k].shape) != tuple(expected[k])
    )
    if missing or unexpected or wrong:
        parts = [f"{what} does not match the network:"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if wrong:
            parts.append(f"shape mismatches ({len(wrong)}): {'; '.join(wrong)}")
        raise CheckpointKeyError("\n  ".join(parts))
    return {k: np.asarray(given[k], dtype=np.float32) for k in expected}


def unflatten(flat: Mapping[str, Any], sep: str = ".") -> dict:
    """``{"a.b": x}`` -> ``{"a": {"b": x}}``."""
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(sep)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def flatten(tree: Mapping, sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """Inverse of :func:`unflatten`."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, sep, f"{prefix}{k}{sep}"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def save_flat(path: str | os.PathLike, flat: Mapping[str, Any]) -> None:
    """Write ``{key: array}`` atomically as ``.npz`` (no pickle) or ``.safetensors``."""
    path = os.fspath(path)
    arrays = {k: np.asarray(v) for k, v in flat.items()}
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=os.path.splitext(path)[1] + ".tmp")
    os.close(fd)
    try:
        if path.endswith(".safetensors"):
            from safetensors.numpy import save_file

            save_file({k: np.array(v, order="C") for k, v in arrays.items()}, tmp)  # keeps 0-d arrays 0-d
        else:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_flat(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a flat ``.npz`` (``allow_pickle=False``) or ``.safetensors`` file."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return dict(load_file(path))
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
