"""Settings of the L∞ noise attacks (PGD, MI-FGSM, TI-DIM) on the [0, 1] pixel scale."""
from __future__ import annotations

import dataclasses

__all__ = ["METHODS", "NoiseConfig", "default_config"]

METHODS = ("pgd", "mifgsm", "tidim")


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
    """Settings of one noise attack (ε and α on the [0, 1] scale).

    ``method`` in :data:`METHODS`; ``step_size`` None means the method's usual rule
    (pgd: 2.5·ε/steps; mifgsm/tidim: ε/steps); ``random_start`` (pgd); ``momentum`` (mifgsm,
    tidim); ``kernel_size``/``nsig`` of the TI Gaussian; ``diversity_prob``/``resize_min`` of DI.
    """

    method: str = "mifgsm"
    eps: float = 16.0 / 255.0
    steps: int = 10
    step_size: float | None = None
    momentum: float = 1.0
    random_start: bool = False
    kernel_size: int = 7
    nsig: float = 3.0
    diversity_prob: float = 0.5
    resize_min: float = 0.9

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {self.method!r}")
        if self.eps <= 0 or self.steps < 1:
            raise ValueError("eps must be > 0 and steps >= 1")

    @property
    def alpha(self) -> float:
        """The step size on the [0, 1] scale."""
        if self.step_size is not None:
            return self.step_size
        return (2.5 if self.method == "pgd" else 1.0) * self.eps / self.steps


def default_config(method: str, **overrides) -> NoiseConfig:
    """The usual settings of ``method`` (see the module docstring), with ``overrides`` applied."""
    base = {
        "pgd": dict(method="pgd", steps=20, random_start=True, momentum=0.0),
        "mifgsm": dict(method="mifgsm", steps=10),
        "tidim": dict(method="tidim", steps=10),
    }[method]
    base.update(overrides)
    return NoiseConfig(**base)
