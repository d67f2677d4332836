"""The golden vectors' weight rule, re-implemented from ``../shared/golden/README.md``.

One ``numpy.random.default_rng(seed)`` per network draws every state-dict entry in key order
(float64, cast to float32); ``skip``/``const`` entries draw nothing. :func:`rule_weights` reads
the key list, shapes and seed stored in a golden ``.npz`` and checks our rule assignment against
the ``rules`` stored there before returning the arrays.
"""
from __future__ import annotations

import re

import numpy as np

_MAPPING = re.compile(r"^style\.\d+\.(weight|bias)$")
_IR152_LAST_BN_GAMMA = re.compile(r"^body\.\d+\.res_layer\.4\.weight$")
_E4E_EQUAL_LINEAR = re.compile(r"^styles\.\d+\.linear\.weight$")


def rule_for(key: str, shape: tuple[int, ...], profile: str, prelu_keys: frozenset[str]) -> str:
    if key.endswith("num_batches_tracked"):
        return "skip"
    if profile == "stylegan2":
        if key == "kernel" or key.endswith(".kernel"):
            return "const"
        m = _MAPPING.match(key)
        if m:
            return "map_" + m.group(1)
        if key.endswith("modulation.bias"):
            return "mod_bias"
        return "bias" if key.endswith(".bias") or len(shape) <= 1 else "normal"
    if profile == "clip":
        if key == "logit_scale":
            return "const"
        if key.endswith((".bias", "_bias")):
            return "bias"
        if key == "visual.class_embedding":
            return "embed"
        if key in ("visual.proj", "text_projection"):
            return "proj"
        return "affine" if len(shape) <= 1 else "fanin"
    if key.endswith("running_var"):
        return "var"
    if key.endswith("running_mean"):
        return "mean"
    if key in prelu_keys:
        return "prelu"
    if key.endswith(".bias") or key == "latent_avg":
        return "bias"
    if profile == "ir152" and _IR152_LAST_BN_GAMMA.match(key):
        return "res_gamma"
    if len(shape) <= 1 and key.endswith(".weight"):
        return "affine"
    if profile == "e4e" and _E4E_EQUAL_LINEAR.match(key):
        return "normal"
    return "fanin"


def draw(rule: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    normal = lambda: rng.standard_normal(shape)  # noqa: E731
    values = {
        "var": lambda: 1.0 + 0.1 * rng.random(shape),
        "mean": lambda: 0.1 * normal(),
        "prelu": lambda: 0.25 + 0.05 * normal(),
        "bias": lambda: 0.1 * normal(),
        "res_gamma": lambda: 0.2 * (1.0 + 0.1 * normal()),
        "affine": lambda: 1.0 + 0.1 * normal(),
        "mod_bias": lambda: 1.0 + 0.1 * normal(),
        "fanin": lambda: normal() / np.sqrt(float(np.prod(shape[1:]))),
        "normal": normal,
        "embed": lambda: normal() / np.sqrt(float(shape[-1])),
        "proj": lambda: normal() / np.sqrt(float(shape[0])),
        "map_weight": lambda: normal() / 0.01,
        "map_bias": lambda: 0.1 * normal() / 0.01,
    }[rule]()
    return np.asarray(values, np.float64).astype(np.float32)


def _shape(s) -> tuple[int, ...]:
    s = str(s)
    return tuple(int(v) for v in s.split(",")) if s else ()


def rule_weights(golden) -> dict[str, np.ndarray]:
    """``{state_dict key: float32 array}`` for a golden ``.npz`` (``np.load`` result or dict)."""
    keys = [str(k) for k in golden["keys"]]
    shapes = [_shape(s) for s in golden["shapes"]]
    profile = str(golden["profile"])
    prelu = frozenset(str(k) for k in golden["prelu_keys"])
    rng = np.random.default_rng(int(golden["seed"]))
    rules = [rule_for(k, s, profile, prelu) for k, s in zip(keys, shapes)]
    stored = [str(r) for r in golden["rules"]]
    mismatched = [(k, a, b) for k, a, b in zip(keys, rules, stored) if a != b]
    assert not mismatched, f"weight rule disagrees with the golden file: {mismatched[:5]}"
    return {k: draw(r, s, rng) for k, s, r in zip(keys, shapes, rules) if r not in ("skip", "const")}
