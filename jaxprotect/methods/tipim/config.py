"""TIP-IM settings (ShawnXYang/TIP-IM ``run.py`` defaults, on the 0–255 pixel scale)."""
from __future__ import annotations

import dataclasses

__all__ = ["TipimConfig", "GAIN_NAMES"]

GAIN_NAMES = ("gain1", "gain2", "gain3")


@dataclasses.dataclass(frozen=True)
class TipimConfig:
    """TIP-IM settings; the defaults are ``run.py``'s (ε and α on the 0–255 scale).

    ``step_size`` None means α = 1.5·ε/steps. ``gamma`` weighs the MMD naturalness term (0 in the
    released code; the paper uses a positive weight). ``norm`` is "l2" (default) or "linf".
    ``gain`` is "gain1", "gain2" or "gain3" (default). ``diversity`` switches input diversity.
    """

    eps: float = 12.0
    steps: int = 100
    step_size: float | None = None
    momentum: float = 1.0
    norm: str = "l2"
    gain: str = "gain3"
    gamma: float = 0.0
    diversity: bool = True
    std_range: tuple[float, float] = (0.01, 0.1)

    def __post_init__(self):
        if self.norm not in ("l2", "linf"):
            raise ValueError(f"norm must be 'l2' or 'linf', not {self.norm!r}")
        if self.gain not in GAIN_NAMES:
            raise ValueError(f"gain must be one of {GAIN_NAMES}, not {self.gain!r}")
        if self.eps <= 0 or self.steps < 1:
            raise ValueError("eps must be > 0 and steps >= 1")

    @property
    def alpha(self) -> float:
        """The step size on the 0–255 scale."""
        return 1.5 * self.eps / self.steps if self.step_size is None else self.step_size
