"""Protecting photos with a pixel-space method (TIP-IM, PGD, MI-FGSM, TI-DIM): settings and the runner.

``PixelSettings`` says everything a run needs (no argparse); :func:`build_runner` loads the
detector, the surrogate recognisers and the target identities once and returns a
:class:`PixelRunner` that a job (:func:`jaxprotect.jobs.run_job`) drives photo by photo. A photo
takes seconds, so no mid-optimisation state is kept: a stop request ends the photo in progress
at its next step, and a later run protects it again from the start (same key, same result).
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxprotect.methods.driver import PhotoOutcome, StopRequested
from jaxprotect.methods.pixel.protector import FaceChoice, PixelProtector, eps_levels, load_surrogates, method_config
from jaxprotect.methods.pixel.targets import SKIMAGE_LFW, SYNTHETIC, aligned_face, folder_targets, skimage_lfw_targets
from jaxprotect.io.side_by_side import side_by_side

__all__ = ["PixelSettings", "PixelRunner", "build_runner", "build_protector"]


@dataclasses.dataclass(frozen=True)
class PixelSettings:
    """One pixel-method run.

    ``method`` tipim, pgd, mifgsm or tidim; ``eps``/``steps``/``step_size`` in grey levels and
    iterations (None: the method's defaults, see :func:`method_config`); ``surrogates`` registry
    names of the recognisers attacked; ``impersonate``: a photo whose identity to pull towards
    (None: dodging); ``targets`` (TIP-IM): a folder of photos, ``"skimage-lfw"`` or
    ``"synthetic"``, with ``num_targets``; ``gain``/``gamma``/``norm``: TIP-IM options;
    ``faces``: which faces of each photo to protect.
    """

    method: str = "tipim"
    eps: float | None = None
    steps: int | None = None
    step_size: float | None = None
    surrogates: tuple = ("mobilefacenet_foamliu",)
    impersonate: str | None = None
    targets: str = SKIMAGE_LFW
    num_targets: int = 10
    gain: str = "gain3"
    gamma: float = 0.0
    norm: str = "l2"
    faces: FaceChoice = FaceChoice()

    def config(self):
        """The method's config (:class:`~jaxprotect.methods.tipim.TipimConfig` or :class:`~jaxprotect.methods.noise.NoiseConfig`)."""
        extra = {"gain": self.gain, "gamma": self.gamma, "norm": self.norm} if self.method == "tipim" else {}
        return method_config(self.method, self.eps, self.steps, self.step_size, **extra)


def build_protector(settings: PixelSettings, detector=None) -> tuple[PixelProtector, list]:
    """The :class:`PixelProtector` ``settings`` describe (loads the surrogates and the targets), and
    the (path, reason) of target photos that gave no face."""
    from jaxprotect.registry import load_network

    config = settings.config()
    detector = detector if detector is not None else load_network("mtcnn")
    surrogates, params = load_surrogates(settings.surrogates)
    size = max(max(s.input_size) for s in surrogates)
    impersonate = aligned_face(settings.impersonate, detector, size) if settings.impersonate else None
    crops, skipped = None, []
    # TIP-IM with an impersonation target: that one identity is the target set.
    if settings.method == "tipim" and impersonate is None and settings.targets != SYNTHETIC:
        if settings.targets == SKIMAGE_LFW:
            crops = skimage_lfw_targets(settings.num_targets, size)
        else:
            crops, skipped = folder_targets(settings.targets, detector, size)
    protector = PixelProtector(settings.method, config, surrogates, params, detector, target_crops=crops,
                               impersonate_crop=impersonate, num_targets=settings.num_targets, faces=settings.faces)
    return protector, skipped


def _floats(matrix) -> list:
    return [[float(v) for v in row] for row in np.asarray(matrix)]


@dataclasses.dataclass
class PixelRunner:
    """Runs a :class:`PixelProtector` photo by photo for the driver."""

    settings: PixelSettings
    protector: PixelProtector
    skipped_targets: list = dataclasses.field(default_factory=list)
    batch_size: int = 1
    ignored_settings: tuple = ()
    spans_processes: bool = False  # each process protects its own photos on its own devices

    @property
    def method(self) -> str:
        return self.settings.method

    @property
    def extra_inputs(self) -> list:
        files = [self.settings.impersonate] if self.settings.impersonate else []
        return files

    def settings_dict(self) -> dict:
        """Everything that determines the result, for reports and job manifests."""
        s = dataclasses.asdict(self.settings)
        s["surrogates"] = list(self.settings.surrogates)
        s["config"] = dataclasses.asdict(self.protector.config)
        return s

    def protect(self, tasks, progress, control=None) -> list:
        """One :class:`PhotoOutcome` (or the exception) per :class:`~jaxprotect.methods.driver.PhotoTask`;
        after a stop request (``control.stop_requested()``, checked at every step) the photo in
        progress and the ones after it get :class:`StopRequested`."""
        out = []
        for task in tasks:
            if control is not None and control.stop_requested():
                out.append(StopRequested())
                continue
            try:
                out.append(self._one(task, progress, control))
            except StopRequested as e:
                out.append(e)
            except Exception as e:  # noqa: BLE001 - reported by the driver, the batch goes on
                out.append(e)
        return out

    def _one(self, task, progress, control=None) -> PhotoOutcome:
        p = self.protector

        def step(i):
            if control is not None and control.stop_requested():
                raise StopRequested
            progress.step()

        progress.stage(f"{task.stem}: {self.method}", p.config.steps, compiles=True)
        result = p.protect(task.photo, task.key, progress=step, path=task.path)
        eps = eps_levels(p.config)
        label = f"protected ({self.method}, eps {eps:g}/255, {p.config.steps} steps)"
        pair = side_by_side([task.photo, result.image], ["original", label])
        faces = []
        for f in result.faces:
            d = dataclasses.asdict(f)
            d["matrix"] = _floats(f.matrix)
            faces.append(d)
        report = {
            "method": self.method,
            "mode": "impersonate" if p.impersonate_crop is not None else "dodge",
            "settings": self.settings_dict(),
            "eps_grey_levels": eps,
            "surrogates": [s.name for s in p.surrogates],
            "crop_size": p.crop_size,
            "key": np.asarray(jax.random.key_data(task.key)).tolist(),
            "faces": faces,
            "skipped_faces": result.skipped,
            "warnings": result.warnings,
            "photo_quality": result.quality,
            "seconds": round(result.seconds, 2),
            "trace": result.trace,
            "jax": jax.__version__,
        }
        sims = "; ".join(f"face {f.index} {[round(v) for v in f.box]}: "
                         + ", ".join(f"{k} {v:.3f}" for k, v in f.similarity_to_original.items())
                         for f in result.faces)
        q = result.quality
        summary = (f"{task.path}: {len(result.faces)} face(s) protected, {len(result.skipped)} skipped, in "
                   f"{result.seconds:.1f}s; surrogate cos to original {sims}; PSNR {q['psnr']:.2f} dB, "
                   f"SSIM {q['ssim']:.4f}")
        for w in result.warnings:
            summary += f"\n  WARNING {w}"
        return PhotoOutcome(result.image, pair, report, summary)


def build_runner(settings: PixelSettings, detector=None) -> PixelRunner:
    """Load what ``settings`` need and return the runner for :func:`~jaxprotect.methods.driver.run_protection`."""
    protector, skipped = build_protector(settings, detector)
    return PixelRunner(settings, protector, skipped)
