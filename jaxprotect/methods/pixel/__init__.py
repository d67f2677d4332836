"""Whole photos through a pixel-space method (TIP-IM and the noise attacks): :mod:`protector`
(detect, align, attack, paste back), :mod:`targets` (target identities), :mod:`run` (settings and
the runner the photo driver calls)."""
from jaxprotect.methods.pixel.protector import (
    DEFAULT_EPS,
    DEFAULT_STEPS,
    PIXEL_METHODS,
    FaceChoice,
    PixelProtector,
    edit_faces,
    eps_levels,
    image_quality,
    load_surrogates,
    method_config,
)

__all__ = ["PIXEL_METHODS", "DEFAULT_EPS", "DEFAULT_STEPS", "FaceChoice", "PixelProtector", "edit_faces",
           "eps_levels", "image_quality", "load_surrogates", "method_config"]
