"""FaceCloak settings: one frozen dataclass, its two modes and the units each mode works in.

Budgets are given in grey levels of a 0..255 photo (``eps_levels=8`` means "8/255" as the
paper and the code's command line write it). FaceCloak optimises on crops normalised to [-1, 1]
(``divide``: 1 unit = 127.5 levels), and the two modes read the budgets differently:

* ``faithful`` (the released code, ``src/cloak.py`` + ``cloaker.py``): a budget of ``b`` levels
  becomes ``b/255`` in [-1, 1] units (``args.multi_cloak_function_max_pert / 255.``), i.e. half of
  what the number says; the learnt mask is then applied ×255 (``cloak_multi``: ``mask *= 255.0``),
  i.e. at ``b`` levels, twice what the optimiser modelled; stickers likewise; the high-pass part
  is added without any scale (≤ 0.125 levels, removed by the int16 truncation).
* ``corrected``: ``b`` levels become ``2b/255`` in [-1, 1] units and everything is applied ×127.5,
  so what is applied is what was optimised; stickers and the high-pass part enter the loss.

Defaults are ``run_cloak_experiments.py`` + ``cloak_template.txt``: ``afog_cloak_multi``, triplet
loss on cosine distances, 10 epochs over the image set, max perturbation 8, step 2, stickers and
high-pass on, 112-px crops, ``divide`` normalisation.
"""
from __future__ import annotations

import dataclasses

__all__ = ["FaceCloakConfig", "MODES", "LOSSES", "FAR_ANCHORS"]

MODES = ("faithful", "corrected")
LOSSES = ("triplet", "fawkes", "untarget")
FAR_ANCHORS = ("fixed", "farthest")


@dataclasses.dataclass(frozen=True)
class FaceCloakConfig:
    """Settings of one cloak (hashable: it is a static argument of the jitted loops).

    Optimiser (``afog_cloak_multi``): ``epochs`` passes over the image set, one sequential
    update per image; ``attn_lr`` and ``attn_std_eps`` are the attention step and the guard
    added to the gradient's standard deviation (10.0 and 0.01 in ``src/cloak_functions.py``).
    Budgets in grey levels (see the module docstring): ``eps_levels`` (the mask), ``step_levels``
    (the sign step), ``sticker_levels`` (``StickerHandler.STICKER_MAX`` = 32/255) and
    ``highpass_levels`` (``HighpassHandler.HIGHPASS_MAX`` = 32/255). ``far_anchor`` is "fixed"
    (the code: one gallery image for every identity) or "farthest" (``get_farthest``, per user);
    ``None`` picks the mode's default ("fixed" faithful, "farthest" corrected).
    """

    mode: str = "faithful"
    epochs: int = 10
    eps_levels: float = 8.0
    step_levels: float = 2.0
    sticker_levels: float = 32.0
    highpass_levels: float = 32.0
    attn_lr: float = 10.0
    attn_std_eps: float = 0.01
    loss: str = "triplet"
    stickers: bool = True
    highpass: bool = True
    crop_size: int = 112
    far_anchor: str | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {self.loss!r}")
        if self.far_anchor is not None and self.far_anchor not in FAR_ANCHORS:
            raise ValueError(f"far_anchor must be one of {FAR_ANCHORS} or None, not {self.far_anchor!r}")
        if self.epochs < 0:
            raise ValueError("epochs must be >= 0")
        for name in ("eps_levels", "step_levels", "sticker_levels", "highpass_levels"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.crop_size < 16:
            raise ValueError("crop_size must be >= 16")

    @property
    def faithful(self) -> bool:
        return self.mode == "faithful"

    def units(self, levels: float) -> float:
        """A budget in grey levels as the optimiser's [-1, 1] units (faithful: /255, corrected: /127.5)."""
        return levels / 255.0 if self.faithful else levels * 2.0 / 255.0

    @property
    def eps(self) -> float:
        """Mask bound in [-1, 1] units (faithful default 8/255)."""
        return self.units(self.eps_levels)

    @property
    def step(self) -> float:
        """Sign-step size in [-1, 1] units (faithful default 2/255)."""
        return self.units(self.step_levels)

    @property
    def sticker_max(self) -> float:
        return self.units(self.sticker_levels)

    @property
    def highpass_max(self) -> float:
        return self.units(self.highpass_levels)

    @property
    def apply_scale(self) -> float:
        """Grey levels per [-1, 1] unit when a cloak is applied: 255 (the code's bug) or 127.5."""
        return 255.0 if self.faithful else 127.5

    @property
    def far_anchor_rule(self) -> str:
        """"fixed" or "farthest" (the mode's default when ``far_anchor`` is None)."""
        if self.far_anchor is not None:
            return self.far_anchor
        return "fixed" if self.faithful else "farthest"

    def to_dict(self) -> dict:
        """The settings as plain JSON-able values (what a cloak file stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FaceCloakConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown FaceCloak settings: {', '.join(unknown)}")
        return cls(**values)
