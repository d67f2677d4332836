"""Protecting photos with CLIP2Protect: settings and the runner the photo driver calls.

:func:`build_runner` loads the detector, the generator, CLIP, LPIPS and the four recognisers
once, computes the target's embeddings, and returns a :class:`Clip2ProtectRunner`. For each batch
the runner aligns the photos to the generator's frame (FFHQ recipe from MTCNN landmarks, unless a
photo already has the generator's size), inverts them with e4e (loaded for the inversion only:
1 GB of weights that the later stages do not need), runs :func:`pipeline.protect_batch`, and
pastes each protected face back into its photo.
"""
from __future__ import annotations

import dataclasses
import datetime
import time

import jax
import numpy as np

from jaxprotect.face_conventions import pick_face, threshold
from jaxprotect.io import NoFaceError, PhotoError, read_photo
from jaxprotect.io.side_by_side import side_by_side
from jaxprotect.methods.clip2protect.config import FR_MODELS, Clip2ProtectConfig
from jaxprotect.methods.clip2protect.inversion import invert
from jaxprotect.methods.clip2protect.networks import load_networks
from jaxprotect.methods.clip2protect.photos import prepare_photo, restore_photo
from jaxprotect.methods.clip2protect.pipeline import face_embeddings, protect_batch
from jaxprotect.methods.driver import PhotoOutcome
from jaxprotect.recognition import cosine
from jaxprotect.runtime import batch_mesh, enable_compile_cache, release_memory

__all__ = ["Clip2ProtectSettings", "Clip2ProtectRunner", "build_runner"]


@dataclasses.dataclass(frozen=True)
class Clip2ProtectSettings:
    """One CLIP2Protect run: ``config`` (the three sections), ``checkpoints`` {kind: path} (see
    :mod:`checkpoints`), ``target`` photo of the identity to impersonate and optionally its face
    box (x1, y1, x2, y2; else MTCNN's best face), ``target_eval`` another photo of that identity
    that only judges success (default: ``target``), ``align`` "auto" | "always" | "never"."""

    config: Clip2ProtectConfig
    checkpoints: dict
    target: str
    target_box: tuple | None = None
    target_eval: str | None = None
    target_eval_box: tuple | None = None
    align: str = "auto"


def _box_of(mtcnn, photo, given, path):
    if given is not None:
        return tuple(float(v) for v in given)
    det = mtcnn.detect(photo)
    index = pick_face(det, "best")  # facenet-pytorch boxes[0], as Clip2Protect
    if index is None:
        raise NoFaceError(path, "no face found")
    return tuple(float(v) for v in det.boxes[index])


def _floats(a) -> list:
    return [float(v) for v in np.asarray(a).reshape(-1)]


class _StageProgress:
    """Adapts the pipeline's ``progress(stage, done, total)`` to :class:`jaxprotect.progress.Progress`."""

    def __init__(self, progress, label: str, seen: set):
        self.progress, self.label, self.seen = progress, label, seen
        self.stage = None
        self.times: dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, stage: str, done: int, total: int):
        now = time.perf_counter()
        self.times[stage] = self.times.get(stage, 0.0) + (now - self._t)
        self._t = now
        if stage == "inversion":
            return
        if stage != self.stage:
            self.stage = stage
            self.progress.stage(f"{self.label}: {stage}", total, compiles=stage not in self.seen)
            self.seen.add(stage)
        self.progress.step()


class Clip2ProtectRunner:
    """Runs CLIP2Protect batch by batch for :func:`jaxprotect.methods.driver.run_protection`."""

    method = "clip2protect"

    def __init__(self, settings: Clip2ProtectSettings):
        from jaxprotect.registry import load_network

        self.settings = settings
        cfg = settings.config
        self.batch_size = cfg.execution.batch_size
        self.cache = enable_compile_cache()
        t0 = time.perf_counter()
        self.mtcnn = load_network("mtcnn")
        target = read_photo(settings.target)
        tbox = _box_of(self.mtcnn, target, settings.target_box, settings.target)
        eval_path = settings.target_eval or settings.target
        if eval_path == settings.target:
            eval_photo = target
            ebox = tbox if settings.target_eval_box is None else tuple(settings.target_eval_box)
        else:
            eval_photo = read_photo(eval_path)
            ebox = _box_of(self.mtcnn, eval_photo, settings.target_eval_box, eval_path)
        self.nets = load_networks(settings.checkpoints, cfg, with_e4e=False)
        self.size = self.nets.synthesis.size
        margin = cfg.search.margin
        self.target_emb = face_embeddings(self.nets, target, tbox, margin)
        self.eval_emb = face_embeddings(self.nets, eval_photo, ebox, margin, [cfg.search.victim])[cfg.search.victim]
        self.load_seconds = time.perf_counter() - t0
        devices = jax.devices()
        n = cfg.execution.num_devices
        self.mesh = batch_mesh(devices[:n] if n else devices)
        self.carry = None
        self._seen_stages: set = set()

    @property
    def extra_inputs(self) -> list:
        s = self.settings
        return [s.target] + ([s.target_eval] if s.target_eval else [])

    def settings_dict(self) -> dict:
        """Everything that determines the result, for reports and job manifests."""
        s = self.settings
        return {"config": s.config.to_dict(), "target": s.target, "target_box": s.target_box,
                "target_eval": s.target_eval, "target_eval_box": s.target_eval_box, "align": s.align,
                "checkpoints": dict(s.checkpoints)}

    def _invert(self, frames) -> np.ndarray:
        from jaxprotect.registry import load_network

        e4e = load_network("e4e", self.settings.checkpoints["e4e"])
        codes = np.concatenate([np.asarray(invert(e4e, frames[i:i + 8])) for i in range(0, len(frames), 8)])
        del e4e
        release_memory()
        return codes

    def protect(self, tasks, progress) -> list:
        """One :class:`PhotoOutcome` (or the exception) per task; the tasks run as one batch."""
        cfg = self.settings.config
        out: list = [None] * len(tasks)
        prepared = {}
        for i, task in enumerate(tasks):
            try:
                prepared[i] = prepare_photo(task.photo, self.size, self.mtcnn, align=self.settings.align)
            except LookupError as e:
                out[i] = NoFaceError(task.path, str(e))
            except ValueError as e:
                out[i] = PhotoError(task.path, str(e))
        ready = sorted(prepared)
        if not ready:
            return out
        label = tasks[ready[0]].stem if len(ready) == 1 else f"{len(ready)} photos"
        stage = _StageProgress(progress, label, self._seen_stages)
        progress.stage(f"{label}: e4e inversion", None)
        frames = np.stack([prepared[i].image for i in ready])
        try:
            t = time.perf_counter()
            w0 = self._invert(frames)
            res = protect_batch(
                self.nets, frames, np.array([prepared[i].box for i in ready], np.float32),
                jax.numpy.stack([tasks[i].key for i in ready]),
                {k: np.repeat(np.asarray(v)[None], len(ready), 0) for k, v in self.target_emb.items()},
                np.repeat(np.asarray(self.eval_emb)[None], len(ready), 0), cfg, w0=w0, mesh=self.mesh,
                progress=stage, finetune_carry=self.carry,
            )
            seconds = (time.perf_counter() - t) / len(ready)
        except Exception as e:  # noqa: BLE001 - every photo of the batch gets the reason, the run goes on
            for i in ready:
                out[i] = e
            return out
        self.carry = res["finetune_carry"]
        for j, i in enumerate(ready):
            try:
                out[i] = self._outcome(tasks[i], prepared[i], res, j, seconds, stage.times)
            except Exception as e:  # noqa: BLE001
                out[i] = e
        return out

    def _outcome(self, task, prepared, res, j, seconds, times) -> PhotoOutcome:
        s, cfg = self.settings, self.settings.config
        sc = cfg.search
        protected = np.clip(np.rint(res["protected"][j] * 255.0), 0, 255).astype(np.uint8)
        whole = restore_photo(task.photo, prepared, protected)
        before = face_embeddings(self.nets, prepared.image, prepared.box, sc.margin)
        thr = threshold(sc.victim, float(sc.far))
        victim_sim = float(res["victim_sim"][j])
        victim_before = float(cosine(before[sc.victim], self.eval_emb))
        verdict = ("impersonation succeeded: the victim matches the protected face to the target"
                   if victim_sim > thr else "the victim does not match the protected face to the target")
        pair = side_by_side(
            [prepared.image, protected],
            ["aligned input", f"protected (clip2protect, \"{sc.prompt}\")"],
            caption=f"held-out {sc.victim}: cos to target {victim_before:.3f} -> {victim_sim:.3f} "
                    f"(threshold {thr:.3f} at FAR {sc.far}): {verdict}",
        )
        loss = res["loss"]
        report = {
            "method": "clip2protect",
            "key": np.asarray(jax.random.key_data(task.key)).tolist(),
            "target": s.target,
            "target_eval": s.target_eval or s.target,
            "alignment": {
                "aligned_here": prepared.matrix is not None,
                "frame_size": int(self.size),
                "face_box_in_frame": list(prepared.box),
                "matrix_photo_to_frame": None if prepared.matrix is None else np.asarray(prepared.matrix).tolist(),
            },
            "victim": {"model": sc.victim, "far": float(sc.far), "threshold": thr, "similarity": victim_sim,
                       "similarity_before": victim_before, "match": bool(victim_sim > thr), "decision": verdict},
            "similarity_to_target": {n: float(res["final_sim"][n][j]) for n in FR_MODELS},
            "similarity_to_target_before": {n: float(cosine(before[n], self.target_emb[n])) for n in FR_MODELS},
            "loss_curve": {k: _floats(loss[k][j]) for k in ("loss", "l2", "adv", "clip")},
            "surrogate_similarity_curve": {n: _floats(v[j]) for n, v in loss["sim"].items()},
            "finetune_loss_curve": _floats(res["finetune_loss"][j]),
            "settings": self.settings_dict(),
            "timing_s": {"load_networks": round(self.load_seconds, 2), "batch_per_photo": round(seconds, 2),
                         **{f"stage_{k}": round(v, 2) for k, v in times.items()}},
            "devices": [str(d) for d in self.mesh.devices.reshape(-1)],
            "xla_cache": self.cache,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        summary = (f"{task.path}: protected in {seconds:.0f}s; held-out {sc.victim} cos to target "
                   f"{victim_before:.3f} -> {victim_sim:.3f} (threshold {thr:.3f}): {verdict}")
        return PhotoOutcome(whole, pair, report, summary)


def build_runner(settings: Clip2ProtectSettings) -> Clip2ProtectRunner:
    """Load every network ``settings`` need and return the runner."""
    return Clip2ProtectRunner(settings)
