"""FaceCloak in the photo job (:mod:`jaxprotect.jobs`): the runners behind ``jaxprotect cloak apply``
(a learnt cloak added to photos of its person) and ``jaxprotect protect --method facecloak`` (a
cloak learnt from each photo and added to it). Both write what every method writes: the cloaked
photo at its own resolution (or the code's resized photo), a labelled side-by-side and a report.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from jaxprotect.io.side_by_side import side_by_side
from jaxprotect.jobs.tasks import PhotoOutcome
from jaxprotect.methods.facecloak.config import FaceCloakConfig
from jaxprotect.methods.facecloak.optimise import crop_embeddings
from jaxprotect.methods.facecloak.preprocess import face_crop, preprocess_photo
from jaxprotect.methods.facecloak.run import AppliedPhoto, Cloak, apply_cloak, cloak_photo

__all__ = ["load_recognisers", "FaceCloakSettings", "CloakApplyRunner", "FaceCloakRunner"]


def load_recognisers(specs) -> tuple[tuple, tuple]:
    """``(recognisers, params)`` for specs ``"name"`` or ``"name=checkpoint"`` (registry names)."""
    from jaxprotect.recognition import recogniser_and_params
    from jaxprotect.registry import load_network

    nets = []
    for spec in specs:
        name, _, checkpoint = spec.partition("=")
        nets.append(load_network(name.strip(), checkpoint.strip() or None))
    if not nets:
        raise ValueError("no surrogate recogniser given")
    pairs = [recogniser_and_params(n) for n in nets]
    return tuple(r for r, _ in pairs), tuple(p for _, p in pairs)


def _similarities(recognisers, params, before, after) -> dict:
    out = {}
    for r, p in zip(recognisers, params):
        e = np.asarray(crop_embeddings(r, p, np.stack([before, after]).astype(np.float32)), np.float64)
        out[r.name] = float(e[0] @ e[1] / (np.linalg.norm(e[0]) * np.linalg.norm(e[1])))
    return out


def _outcome(task, config: FaceCloakConfig, applied: AppliedPhoto, output: str, recognisers, params, report: dict,
             seconds: float, judges=None, verdict: dict | None = None) -> PhotoOutcome:
    """The job's outcome for one cloaked photo; similarities compare the face crops before and after;
    ``verdict`` (with the :class:`~jaxprotect.judges.photo_judges.PhotoJudges` that gave it) joins
    the report, the caption and the console lines."""
    from jaxprotect.eval.quality import psnr, ssim

    if output == "resized":  # compare like with like: the code's own resized photo before the cloak
        original = applied.resized_base
        before, after = face_crop(original, applied.resized_box), face_crop(applied.image, applied.resized_box)
    else:
        original = task.photo
        before = preprocess_photo(original, None, config.crop_size, box=applied.original_box).crop
        after = preprocess_photo(applied.image, None, config.crop_size, box=applied.original_box).crop
    sims = _similarities(recognisers, params, before, after)
    quality = {"psnr": psnr(original, applied.image), "ssim": ssim(original, applied.image)}
    report = {
        "method": "facecloak",
        "mode": config.mode,
        "settings": config.to_dict(),
        **report,
        "output": "resized (the code's own output)" if output == "resized" else "original resolution",
        "face_box": [float(v) for v in applied.original_box],
        "resize_scale": [float(v) for v in applied.scale],
        "surrogate_cos_to_original": sims,
        "photo_quality": quality,
        "seconds_per_photo": round(seconds, 3),
    }
    if judges is not None:
        report["verdict"] = verdict
        report["judges_installed"] = list(judges.names)
    caption = None if verdict is None else judges.caption(verdict)
    pair = side_by_side([original, applied.image],
                        ["original", f"cloaked (facecloak {config.mode}, eps {config.eps_levels:g})"], caption=caption)
    text = ", ".join(f"{k} {v:.3f}" for k, v in sims.items()) or "n/a"
    summary = (f"{task.path}: cloaked ({config.mode}); surrogate cos to original {text}; PSNR {quality['psnr']:.2f} dB, "
               f"SSIM {quality['ssim']:.4f}")
    if verdict is not None:
        summary += "\n" + "\n".join("  " + line for line in judges.lines(verdict))
    return PhotoOutcome(applied.image, pair, report, summary)


class CloakApplyRunner:
    """``jaxprotect cloak apply``: one learnt :class:`Cloak` added to every photo (all faces of a batch
    in one jitted call). ``recognisers``/``params`` give the report's similarities (may be empty)."""

    method = "facecloak"
    ignored_settings = ()
    spans_processes = False

    def __init__(self, cloak: Cloak, cloak_path: str, detector, recognisers=(), params=(), output: str = "original",
                 batch_size: int = 32):
        self.cloak, self.cloak_path, self.detector = cloak, cloak_path, detector
        self.recognisers, self.params, self.output, self.batch_size = recognisers, params, output, batch_size

    @property
    def extra_inputs(self) -> list:
        return [self.cloak_path]

    def settings_dict(self) -> dict:
        """The cloak (its file's content) and how it is applied."""
        meta = {k: self.cloak.meta.get(k) for k in ("surrogates", "synthetic", "synthetic_source", "images", "seed")}
        return {"cloak_file": self.cloak_path, "config": self.cloak.config.to_dict(), "learnt_with": meta,
                "mask_sha256": _sha(self.cloak.mask), "output": self.output}

    def protect(self, tasks, progress, control=None) -> list:
        progress.stage("applying the cloak", None)
        start = time.perf_counter()
        applied = apply_cloak(self.cloak, [t.photo for t in tasks], self.detector, output=self.output,
                              paths=[t.path for t in tasks])
        seconds = (time.perf_counter() - start) / max(len(tasks), 1)
        out = []
        for task, result in zip(tasks, applied):
            if isinstance(result, Exception):
                out.append(result)
                continue
            try:
                out.append(_outcome(task, self.cloak.config, result, self.output, self.recognisers, self.params,
                                    {"cloak_file": self.cloak_path, "learnt_with": self.settings_dict()["learnt_with"]},
                                    seconds))
            except Exception as e:  # noqa: BLE001 - reported by the job, the batch goes on
                out.append(e)
        return out


def _sha(array) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(np.asarray(array, np.float32)).tobytes()).hexdigest()


@dataclasses.dataclass(frozen=True)
class FaceCloakSettings:
    """``jaxprotect protect --method facecloak``: a cloak learnt from each photo and added to it.

    ``config`` the method's settings; ``surrogates`` recogniser specs (``"name"`` or
    ``"name=checkpoint"``); ``augment`` built-in synthetic images made from the photo (0: the photo
    alone); ``output`` "original" (the photo's resolution) or "resized" (the code's own output);
    ``judges`` the real judges of the per-photo verdict (None: every installed one; ``()``: none).
    """

    config: FaceCloakConfig = FaceCloakConfig()
    surrogates: tuple = ("mobilefacenet_foamliu",)
    augment: int = 8
    output: str = "original"
    judges: tuple | None = None


class FaceCloakRunner:
    """Learns a cloak from each photo (its own key) and adds it to that photo."""

    method = "facecloak"
    batch_size = 1
    extra_inputs = ()
    ignored_settings = ()
    spans_processes = False

    def __init__(self, settings: FaceCloakSettings, detector=None):
        from jaxprotect.judges.photo_judges import PhotoJudges
        from jaxprotect.registry import load_network

        self.settings = settings
        self.detector = detector if detector is not None else load_network("mtcnn")
        self.recognisers, self.params = load_recognisers(settings.surrogates)
        self.judges = PhotoJudges(settings.judges, self.detector)

    def settings_dict(self) -> dict:
        s = self.settings
        return {"config": s.config.to_dict(), "surrogates": list(s.surrogates), "augment": s.augment,
                "output": s.output, "judges": None if s.judges is None else list(s.judges)}

    def protect(self, tasks, progress, control=None) -> list:
        out = []
        for task in tasks:
            progress.stage(f"{task.stem}: learning the cloak", None)
            try:
                start = time.perf_counter()
                cloak, applied = cloak_photo(task.photo, self.recognisers, self.params, self.detector,
                                             self.settings.config, task.key, augment=self.settings.augment,
                                             output=self.settings.output, path=task.path)
                seconds = time.perf_counter() - start
                report = {"surrogates": list(self.settings.surrogates),
                          "synthetic": cloak.meta.get("synthetic"), "anchors": cloak.meta.get("anchors"),
                          "losses": [float(v) for v in cloak.meta.get("losses", [])]}
                verdict = None
                if self.judges and self.settings.output == "original":  # same pixels as the original photo
                    progress.stage(f"{task.stem}: judging the cloaked face ({', '.join(self.judges.names)}, also "
                                   f"after JPEG 75)", 1)
                    verdict = self.judges.verdict(task.photo, applied.image, [applied.original_box],
                                                  [r.name for r in self.recognisers], on_face=progress.step)
                out.append(_outcome(task, self.settings.config, applied, self.settings.output, self.recognisers,
                                    self.params, report, seconds, self.judges, verdict))
            except Exception as e:  # noqa: BLE001 - reported by the job, the batch goes on
                out.append(e)
        return out
