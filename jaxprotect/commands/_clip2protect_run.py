"""The work behind ``jaxprotect protect --method clip2protect`` (imported only when it runs)."""
from __future__ import annotations

import datetime
import json
import os
import sys
import time

import jax
import numpy as np

from jaxprotect.io import NoFaceError, PhotoError, read_photo, run_batch, write_photo
from jaxprotect.methods.clip2protect.config import FR_MODELS
from jaxprotect.methods.clip2protect.inversion import invert
from jaxprotect.methods.clip2protect.networks import load_networks, release_memory
from jaxprotect.methods.clip2protect.photos import prepare_photo, restore_photo, side_by_side
from jaxprotect.methods.clip2protect.pipeline import face_embeddings, photo_keys, protect_batch
from jaxprotect.commands.protect_clip2protect import photo_id
from jaxprotect.methods.clip2protect.sharding import batch_mesh
from jaxprotect.models.fr_conventions import cosine_similarity, threshold

SUFFIX = "_clip2protect"


def _enable_compile_cache() -> str | None:
    """Persist XLA compilations across runs (the 1024 steps take minutes to compile on CPU)."""
    folder = os.environ.get("JAXPROTECT_XLA_CACHE", os.path.expanduser("~/.cache/jaxprotect/xla"))
    if not folder or folder == "0":
        return None
    try:
        os.makedirs(folder, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 5.0)
    except (OSError, AttributeError):
        return None
    return folder


class _Progress:
    """One tqdm bar per batch over stages and steps (stderr); also records stage wall times."""

    def __init__(self, enabled: bool, label: str, total: int):
        self.bar = None
        self.times: dict[str, float] = {}
        self.totals: dict[str, int] = {}
        self._t = time.perf_counter()
        self.label = label
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="step", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, stage: str, done: int, total: int):
        now = time.perf_counter()
        self.times[stage] = self.times.get(stage, 0.0) + (now - self._t)
        self._t = now
        if self.bar is not None and stage != "inversion":
            self.totals[stage] = max(total, self.totals.get(stage, 0))
            self.bar.total = max(self.bar.total or 0, sum(self.totals.values()))
            self.bar.set_description(f"{self.label}: {stage} {done}/{total}")
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _detect_box(mtcnn, photo, given, what):
    if given is not None:
        return given
    det = mtcnn.detect(photo)
    if len(det.boxes) == 0:
        raise NoFaceError(what, "no face found")
    return tuple(float(v) for v in det.boxes[0])


def _out_paths(out_dir: str, path: str, taken: set, ext: str = "png") -> dict:
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem in taken:
        stem = f"{stem}_{abs(hash(os.path.abspath(path))) % 10**8:08d}"
    taken.add(stem)
    base = os.path.join(out_dir, stem + SUFFIX)
    return {"photo": f"{base}.{ext}", "side_by_side": base + "_side_by_side.png", "report": base + ".json"}


def _floats(a) -> list:
    return [float(v) for v in np.asarray(a).reshape(-1)]


def protect_photos(args, cfg, paths: dict, target_box, eval_box) -> int:
    """Load the networks, protect every photo in batches, write the outputs. Returns the exit code."""
    cache = _enable_compile_cache()
    from jaxprotect.registry import load_network

    t0 = time.perf_counter()
    mtcnn = load_network("mtcnn")
    try:
        target = read_photo(args.target)
        tbox = _detect_box(mtcnn, target, target_box, args.target)
        eval_path = args.target_eval or args.target
        eval_photo = target if eval_path == args.target else read_photo(eval_path)
        ebox = tbox if eval_path == args.target and eval_box is None else _detect_box(mtcnn, eval_photo, eval_box,
                                                                                        eval_path)
    except PhotoError as e:
        print(f"error: target: {e}")
        return 2
    generator = load_network("stylegan2", paths["stylegan2"])
    size = generator.size
    originals: dict = {}

    def prepare(path):
        photo = read_photo(path)
        try:
            prepared = prepare_photo(photo, size, mtcnn, align=args.align)
        except LookupError as e:
            raise NoFaceError(path, str(e)) from None
        except ValueError as e:
            raise PhotoError(path, str(e)) from None
        originals[path] = photo
        return prepared

    report = run_batch(args.photos, prepare, quiet=True)
    for item in report.failed:
        print(f"FAILED {item.path}: [{item.error_type}] {item.error}", file=sys.stderr)
    ready = [i for i in report.items if i.ok]

    # e4e (1 GB of weights) runs first, alone: every code is computed, then the encoder is dropped
    codes = {}
    if ready:
        e4e = load_network("e4e", paths["e4e"])
        for start in range(0, len(ready), 8):
            chunk = ready[start:start + 8]
            w = np.asarray(invert(e4e, np.stack([i.value.image for i in chunk])))
            codes.update({i.path: w[j] for j, i in enumerate(chunk)})
        del e4e
        release_memory()
    nets = load_networks(paths, cfg, with_e4e=False, generator=generator)
    del generator
    load_s = time.perf_counter() - t0
    temb = face_embeddings(nets, target, tbox, cfg.margin)
    eemb = face_embeddings(nets, eval_photo, ebox, cfg.margin, [cfg.victim])[cfg.victim]
    quiet = args.no_progress
    os.makedirs(args.output_dir, exist_ok=True)
    mesh = batch_mesh()
    taken: set = set()
    carry = None
    seed_key = jax.random.key(args.seed)
    failed = {i.path: f"[{i.error_type}] {i.error}" for i in report.failed}
    written = []
    bs = max(1, int(args.batch_size))
    for start in range(0, len(ready), bs):
        chunk = ready[start:start + bs]
        frames = np.stack([i.value.image for i in chunk])
        boxes = np.array([i.value.box for i in chunk], np.float32)
        ids = [photo_id(i.path) for i in chunk]
        keys = photo_keys(seed_key, ids)
        b = len(chunk)
        per_photo_ft = 0 if (cfg.skip_finetune or cfg.finetune_steps == 0) else cfg.finetune_steps
        ft_total = per_photo_ft * (b if cfg.sequential_generator else 1)
        bar = _Progress(not quiet, f"photos {start + 1}-{start + b}/{len(ready)}", ft_total + cfg.steps)
        try:
            t = time.perf_counter()
            res = protect_batch(
                nets, frames, boxes, keys,
                {k: np.repeat(np.asarray(v)[None], b, 0) for k, v in temb.items()},
                np.repeat(np.asarray(eemb)[None], b, 0), cfg, w0=np.stack([codes[i.path] for i in chunk]),
                mesh=mesh, progress=bar, finetune_carry=carry,
            )
            batch_s = time.perf_counter() - t
        except Exception as e:  # noqa: BLE001 - report every photo of the batch, go on with the next batch
            if os.environ.get("JAXPROTECT_DEBUG"):
                raise
            for i in chunk:
                failed[i.path] = f"[{type(e).__name__}] {e}"
                print(f"FAILED {i.path}: [{type(e).__name__}] {e}", file=sys.stderr)
            continue
        finally:
            bar.close()
        carry = res["finetune_carry"]
        for j, item in enumerate(chunk):
            try:
                written.append(_write_outputs(args, cfg, item, j, res, originals[item.path], ids[j], nets, eemb,
                                              temb, paths, taken, bar.times, batch_s / b, load_s, cache))
            except PhotoError as e:
                failed[item.path] = f"[{type(e).__name__}] {e.reason}"
                print(f"FAILED {item.path}: [{type(e).__name__}] {e.reason}", file=sys.stderr)
    n = len(args.photos)
    print(f"{n} photo(s): {n - len(failed)} protected, {len(failed)} failed; outputs in {args.output_dir}",
          file=sys.stderr)
    for p, why in failed.items():
        print(f"  FAILED {p}: {why}", file=sys.stderr)
    for w in written:
        print(w)
    return 1 if failed else 0


def _write_outputs(args, cfg, item, j, res, original, pid, nets, eemb, temb, paths, taken, times, seconds,
                   load_s, cache) -> str:
    prepared = item.value
    out = _out_paths(args.output_dir, item.path, taken, getattr(args, "output_format", None) or "png")
    protected = np.clip(np.rint(res["protected"][j] * 255.0), 0, 255).astype(np.uint8)
    whole = restore_photo(original, prepared, protected)
    inputs = list(args.photos) + [args.target] + ([args.target_eval] if args.target_eval else [])
    write_photo(out["photo"], whole, inputs=inputs)
    write_photo(out["side_by_side"], side_by_side(prepared.image, protected), inputs=inputs)

    before = face_embeddings(nets, prepared.image, prepared.box, cfg.margin)
    sim_before = {n: float(cosine_similarity(before[n], temb[n])) for n in FR_MODELS}
    victim_before = float(cosine_similarity(before[cfg.victim], eemb))
    thr = threshold(cfg.victim, float(cfg.far))
    victim_sim = float(res["victim_sim"][j])
    loss = res["loss"]
    report = {
        "method": "clip2protect",
        "input": os.path.abspath(item.path),
        "outputs": {k: os.path.abspath(v) for k, v in out.items() if k != "report"},
        "seed": args.seed,
        "photo_key_index": pid,
        "target": os.path.abspath(args.target),
        "target_eval": os.path.abspath(args.target_eval or args.target),
        "alignment": {
            "aligned_here": prepared.matrix is not None,
            "frame_size": int(nets.synthesis.size),
            "face_box_in_frame": list(prepared.box),
            "matrix_photo_to_frame": None if prepared.matrix is None else np.asarray(prepared.matrix).tolist(),
        },
        "victim": {
            "model": cfg.victim,
            "far": float(cfg.far),
            "threshold": thr,
            "similarity": victim_sim,
            "similarity_before": victim_before,
            "match": bool(victim_sim > thr),
            "decision": ("impersonation succeeded: the victim matches the protected face to the target"
                         if victim_sim > thr else "the victim does not match the protected face to the target"),
        },
        "similarity_to_target": {n: float(res["final_sim"][n][j]) for n in FR_MODELS},
        "similarity_to_target_before": sim_before,
        "loss_curve": {k: _floats(loss[k][j]) for k in ("loss", "l2", "adv", "clip")},
        "surrogate_similarity_curve": {n: _floats(v[j]) for n, v in loss["sim"].items()},
        "finetune_loss_curve": _floats(res["finetune_loss"][j]),
        "settings": cfg.to_dict(),
        "checkpoints": {k: os.path.abspath(v) for k, v in paths.items()},
        "timing_s": {"load_networks": round(load_s, 2), "batch_per_photo": round(seconds, 2),
                     **{f"stage_{k}": round(v, 2) for k, v in times.items()}},
        "devices": [str(d) for d in jax.devices()],
        "xla_cache": cache,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = out["report"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, out["report"])
    return out["photo"]
