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
from jaxprotect.methods.clip2protect.pipeline import batching_mode, face_embeddings, protect_batch
from jaxprotect.methods.driver import PhotoOutcome, StopRequested
from jaxprotect.recognition import cosine
from jaxprotect.runtime import batch_mesh, enable_compile_cache, release_memory, spans_processes

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
            if done > 1:  # a batch resumed from saved state: the steps before it were done earlier
                self.progress.step(done - 1)
        self.progress.step()


class Clip2ProtectRunner:
    """Runs CLIP2Protect batch by batch for a job (:func:`jaxprotect.jobs.run_job`).

    ``nets``, ``detector`` and ``encoder`` replace the networks the settings' checkpoints name
    (e.g. a small configuration in tests): ``detector.detect(photo)`` gives MTCNN-like
    detections, ``encoder(frames uint8 [N, S, S, 3]) -> W+ [N, L, 512]`` inverts photos.

    With a job's :class:`~jaxprotect.jobs.tasks.BatchControl`, the batch's state is saved every
    ``control.every[stage]`` steps, at the end of the fine-tuning and when a stop is requested
    (then :class:`~jaxprotect.jobs.tasks.StopRequested` is raised), and a batch planned to resume
    at (stage, step) restores it. Photos whose per-photo generators run one after the other
    ("loop" batching, the single-CPU default) make batches of one photo, so every batch steps
    together. On a mesh that spans processes every process runs each batch with the same number
    of photos (stand-ins fill the gaps; their results are dropped).
    """

    method = "clip2protect"
    ignored_settings = ("config.execution",)

    def __init__(self, settings: Clip2ProtectSettings, *, nets=None, detector=None, encoder=None):
        from jaxprotect.registry import load_network

        self.settings = settings
        cfg = settings.config
        self.cache = enable_compile_cache()
        t0 = time.perf_counter()
        self.mtcnn = detector if detector is not None else load_network("mtcnn")
        self._encoder = encoder
        target = read_photo(settings.target)
        tbox = _box_of(self.mtcnn, target, settings.target_box, settings.target)
        eval_path = settings.target_eval or settings.target
        if eval_path == settings.target:
            eval_photo = target
            ebox = tbox if settings.target_eval_box is None else tuple(settings.target_eval_box)
        else:
            eval_photo = read_photo(eval_path)
            ebox = _box_of(self.mtcnn, eval_photo, settings.target_eval_box, eval_path)
        self.nets = nets if nets is not None else load_networks(settings.checkpoints, cfg, with_e4e=False)
        self.size = self.nets.synthesis.size
        margin = cfg.search.margin
        self.target_emb = face_embeddings(self.nets, target, tbox, margin)
        self.eval_emb = face_embeddings(self.nets, eval_photo, ebox, margin, [cfg.search.victim])[cfg.search.victim]
        self.load_seconds = time.perf_counter() - t0
        self.mesh = batch_mesh(_mesh_devices(cfg.execution.num_devices))
        self.spans_processes = spans_processes(self.mesh)
        loop = cfg.finetune.runs and batching_mode(cfg.execution, self.mesh) == "loop"
        self.resumable = not cfg.finetune.sequential_generator
        self.batch_size = 1 if (loop and self.resumable) else cfg.execution.batch_size
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
        if self._encoder is not None:
            return np.asarray(self._encoder(frames), np.float32)
        from jaxprotect.registry import load_network

        e4e = load_network("e4e", self.settings.checkpoints["e4e"])
        codes = np.concatenate([np.asarray(invert(e4e, frames[i:i + 8])) for i in range(0, len(frames), 8)])
        del e4e
        release_memory()
        return codes

    def _restore(self, ckpt, start, rows: int | None = None) -> tuple[dict, np.ndarray]:
        """(protect_batch's ``resume``, saved e4e codes) of a batch saved at ``start``."""
        stage, step = start
        ft_steps = self.settings.config.finetune.steps
        if stage == "fine-tune":
            arrays, _ = ckpt.restore("fine-tune", step, rows=rows)
            if step >= ft_steps:  # the tuned generator, saved at the end of the stage
                tuned = {"params": arrays["params"], "losses": arrays["losses"]}
                return {"stage": "search", "step": 0, "finetune": tuned, "search": None}, arrays["w0"]
            return {"stage": "fine-tune", "step": step, "finetune": arrays}, arrays["w0"]
        arrays, _ = ckpt.restore("search", step, rows=rows)
        resume = {"stage": "search", "step": step, "search": {"state": arrays["state"], "curves": arrays["curves"]}}
        if self.settings.config.finetune.runs:
            tuned, _ = ckpt.restore("fine-tune", ft_steps, rows=rows)
            resume["finetune"] = {"params": tuned["params"], "losses": tuned["losses"]}
        return resume, arrays["w0"]

    def protect(self, tasks, progress, control=None) -> list:
        """One :class:`PhotoOutcome` (or the exception) per task; the tasks run as one batch."""
        from jaxprotect.jobs.distributed import any_process, process_info

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
        lockstep = self.spans_processes
        if lockstep and not any_process(bool(ready), process_info()):
            return out
        if not ready and not lockstep:
            return out
        start = control.start if control is not None else None
        ckpt = None
        ids = [tasks[i].id for i in ready]
        if control is not None and self.resumable and (ready or lockstep):
            ckpt = control.checkpoint_for(ids, mesh=self.mesh)
        resume, w0 = None, None
        if start is not None and ckpt is not None and lockstep:
            # Every process restores its rows of the round together; its photos must be the ones saved.
            resume, w0 = self._restore(ckpt, start, rows=self.batch_size)
            saved = _saved_rows(ckpt)
            if saved != ids:
                raise RuntimeError(f"the saved state of {ckpt.folder} holds photos {saved} on this process, the batch "
                                   f"now {ids}; delete that folder to start these photos again")
        elif start is not None and ckpt is not None:
            try:
                resume, w0 = self._restore(ckpt, start)
                if len(w0) != len(ready):
                    raise ValueError(f"saved state holds {len(w0)} photos, the batch {len(ready)}")
            except (OSError, ValueError, KeyError) as e:
                ckpt.remove()
                progress.write(f"WARNING the saved state of {len(ready)} photo(s) could not be restored ({e}); "
                               "they start again")
                resume, w0 = None, None
        if start is not None and resume is None and lockstep:
            resume = _standin_resume(start, cfg.finetune.steps)
        label = tasks[ready[0]].stem if len(ready) == 1 else f"{len(ready)} photos"
        stage = _StageProgress(progress, label, self._seen_stages)
        try:
            frames, boxes, keys, w0 = self._batch_inputs(tasks, prepared, ready, w0, progress, label, lockstep)
            b = len(frames)
            on_step = None
            if control is not None:
                kept = b if lockstep else len(ready)  # a round saves every row, stand-ins too (same count everywhere)
                on_step = _Saver(control, ckpt, w0[:kept], cfg.finetune.steps, kept)
            if resume is not None and len(ready) < b:
                resume = _pad_resume(resume, b)
            t = time.perf_counter()
            res = protect_batch(
                self.nets, frames, boxes, keys,
                {k: np.repeat(np.asarray(v)[None], b, 0) for k, v in self.target_emb.items()},
                np.repeat(np.asarray(self.eval_emb)[None], b, 0), cfg, w0=w0, mesh=self.mesh,
                progress=stage, finetune_carry=self.carry, resume=resume, on_step=on_step,
            )
            seconds = (time.perf_counter() - t) / max(1, len(ready))
        except StopRequested:
            raise
        except Exception as e:  # noqa: BLE001 - every photo of the batch gets the reason, the run goes on
            if lockstep:
                raise  # the other processes are in the same computation: stop the job, not one batch
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

    def _batch_inputs(self, tasks, prepared, ready, w0, progress, label, lockstep):
        """(frames, boxes, keys, w0) of the batch: the ready photos, then, on a mesh that spans
        processes, stand-ins up to the batch size (copies of the last photo, or a blank frame)."""
        s = self.size
        frames = [prepared[i].image for i in ready]
        boxes = [prepared[i].box for i in ready]
        keys = [tasks[i].key for i in ready]
        if w0 is None and ready:
            progress.stage(f"{label}: e4e inversion", None)
            w0 = self._invert(np.stack(frames))
        w0 = [] if w0 is None else list(np.asarray(w0, np.float32))
        if lockstep:
            while len(frames) < self.batch_size:
                if ready:
                    frames.append(frames[-1]), boxes.append(boxes[-1]), keys.append(keys[-1])
                else:
                    frames.append(np.zeros((s, s, 3), np.uint8))
                    boxes.append((s / 4, s / 4, 3 * s / 4, 3 * s / 4))
                    keys.append(jax.random.key(0))
                if len(w0) < len(frames):  # restored codes of a round already hold the stand-ins' rows
                    w0.append(w0[-1] if w0 else np.zeros((self.nets.synthesis.n_latent, 512), np.float32))
        return (np.stack(frames), np.array(boxes, np.float32), jax.numpy.stack(keys), np.stack(w0))

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
        return PhotoOutcome(whole, pair, report, summary, verdict=report["victim"])


def build_runner(settings: Clip2ProtectSettings) -> Clip2ProtectRunner:
    """Load every network ``settings`` need and return the runner."""
    return Clip2ProtectRunner(settings)


def _mesh_devices(num_devices: int | None) -> list:
    """All devices (of every process), or the first ``num_devices`` of each process."""
    devices = jax.devices()
    if not num_devices:
        return devices
    out = []
    for p in range(jax.process_count()):
        out += [d for d in devices if d.process_index == p][:num_devices]
    return out


def _saved_rows(ckpt) -> list:
    """The photo ids a round checkpoint's rows hold on this process (as saved)."""
    import json

    path = ckpt.folder / f"rows.p{ckpt.index}.json"
    return json.loads(path.read_text())["photos"] if path.exists() else []


def _standin_resume(start, ft_steps: int) -> dict:
    """protect_batch's ``resume`` for stand-in photos joining a batch at ``start``."""
    stage, step = start
    if stage == "fine-tune" and step < ft_steps:
        return {"stage": "fine-tune", "step": step, "finetune": None}
    return {"stage": "search", "step": step if stage == "search" else 0, "finetune": None, "search": None}


def _pad_resume(resume: dict, b: int) -> dict:
    """``resume`` with every saved array's photo axis padded to ``b`` by repeating the last photo
    (the stand-ins are copies of it)."""
    def pad(x):
        x = np.asarray(x)
        return np.concatenate([x] + [x[-1:]] * (b - len(x))) if x.ndim and len(x) < b else x

    out = dict(resume)
    for key in ("finetune", "search"):
        if out.get(key) is not None:
            out[key] = jax.tree.map(pad, out[key])
    return out


class _Saver:
    """The pipeline's ``on_step``: saves the batch's state every ``control.every[stage]`` steps,
    at the end of the fine-tuning and on a stop request (then raises StopRequested)."""

    def __init__(self, control, ckpt, w0, ft_steps: int, real: int):
        self.control, self.ckpt, self.w0, self.ft_steps, self.real = control, ckpt, w0, ft_steps, real

    def _rows(self, tree):
        return jax.tree.map(lambda x: np.asarray(x)[:self.real] if np.ndim(x) else x, tree)

    def __call__(self, stage, step, total, snapshot):
        stopping = self.control.stop_requested()
        every = int(self.control.every.get(stage, 0) or 0)
        boundary = stage == "fine-tune" and step == self.ft_steps
        if self.ckpt is not None and (stopping or boundary or (every and step % every == 0)):
            snap = self._rows(snapshot())
            if boundary:
                snap = {"params": snap["params"], "losses": snap["losses"]}
            self.ckpt.save(stage, step, dict(snap, w0=self.w0), {"photos": self.ckpt.photo_ids})
        if stopping:
            if self.ckpt is not None:
                self.ckpt.wait()
            raise StopRequested
