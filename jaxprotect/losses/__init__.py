"""Losses of the ported methods (pure functions of params and images).

Names are imported lazily, so ``import jaxprotect.losses`` does not import transformers.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "ClipTextFeatures": "jaxprotect.losses.clip_losses",
    "clip_image_features": "jaxprotect.losses.clip_losses",
    "directional_loss": "jaxprotect.losses.clip_losses",
    "directional_loss_from_features": "jaxprotect.losses.clip_losses",
    "nce_loss": "jaxprotect.losses.clip_losses",
    "nce_loss_from_features": "jaxprotect.losses.clip_losses",
    "precompute_text_features": "jaxprotect.losses.clip_losses",
    "safe_normalize": "jaxprotect.losses.clip_losses",
    "clip_preprocess": "jaxprotect.losses.preprocess",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'jaxprotect.losses' has no attribute {name!r}")
