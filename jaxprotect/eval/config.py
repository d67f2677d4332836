"""Settings of an evaluation (what ``jaxprotect evaluate`` parses its options into)."""
from __future__ import annotations

import dataclasses

from jaxprotect.eval.robustness import DEFAULT_TRANSFORMS

__all__ = ["EvaluateConfig", "FARS"]

FARS = (0.1, 0.01, 0.001)


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """What to compare the protected photos with, which judges to ask and what to measure.

    Folders: ``originals_dir`` (the unprotected photos; also the calibration set), optional
    ``targets_dir`` (impersonation targets) and ``gallery_dir`` (identification gallery, photos named
    ``<identity>_<n>`` or listed in ``identities``). ``mapping``: CSV/JSON pairing file (see
    :mod:`jaxprotect.eval.pairing`). ``judges``: real judges ("auto", "dlib", "facenet_casia",
    "facenet_casia_jax", "none"); ``recognisers``: ``(registry name, checkpoint or None)`` pairs.
    ``fars``: false-accept rates of the verification thresholds; ``headline_far`` the one the
    summary and robustness tables show. ``ranks``: identification ranks. ``robustness``: transform
    names (:data:`jaxprotect.eval.robustness.TRANSFORMS`); ``robustness_control`` also transforms
    the originals, to show what the transform alone does. ``lpips``: "alex", "vgg" or None.
    ``inception_fid``: path of ``pt_inception-2015-12-05-6726825d.pth`` (or its cache) for a real FID.
    ``kid_*`` and ``seed``: KID's subsets, drawn from this numpy seed. ``plots``: draw PNGs when
    matplotlib is installed.
    """

    originals_dir: str
    targets_dir: str | None = None
    gallery_dir: str | None = None
    mapping: str | None = None
    identities: str | None = None
    judges: tuple[str, ...] = ("auto",)
    recognisers: tuple[tuple[str, str | None], ...] = ()
    fars: tuple[float, ...] = FARS
    headline_far: float = 0.01
    ranks: tuple[int, ...] = (1, 5)
    robustness: tuple[str, ...] = DEFAULT_TRANSFORMS
    robustness_control: bool = True
    lpips: str | None = "alex"
    inception_fid: str | None = None
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    seed: int = 0
    plots: bool = True

    def __post_init__(self):
        if self.headline_far not in self.fars:
            raise ValueError(f"headline_far {self.headline_far} must be one of fars {self.fars}")
        if self.lpips not in (None, "alex", "vgg"):
            raise ValueError(f"lpips must be 'alex', 'vgg' or None, not {self.lpips!r}")
