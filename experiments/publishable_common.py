"""Shared pieces of experiments/publishable.py and publishable_tune.py: photos, pairs, judges,
thresholds, the methods compared, and how one method is measured.

Photos: deepface (../shared/assets/faces/deepface, test data only) with master.csv's pairs. The
first photo of each same-person pair is protected; judges compare it with the pair's OTHER photo.
Thresholds: calibrated at FAR 1% on the unprotected different-person pairs, plus dlib's usual 0.6.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
from real_dodging import read_pairs  # noqa: F401 - the experiments' one master.csv reader

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("JAXPROTECT_SHARED", HERE.parent.parent / "shared"))
FACES = SHARED / "assets" / "faces"
DEEPFACE = FACES / "deepface"
FAR = 0.01
JUDGES = ("dlib", "facenet_casia")
# tuning photos (first photos of same-person pairs): never reported on in publishable.md
TUNE_PHOTOS = ("img3.jpg", "img13.jpg", "img20.jpg", "img6.jpg")
SURROGATE_SETS = {"mfn": ("mobilefacenet_foamliu",), "ens": ("mobilefacenet_foamliu", "facenet_casia")}
# the judge each surrogate set may NOT be judged by (it was optimised against)
SURROGATE_JUDGE = {"mobilefacenet_foamliu": None, "facenet_casia": "facenet_casia"}


@dataclasses.dataclass
class Context:
    """Everything loaded once: photos, pairs, detector, judges, thresholds, original embeddings, LPIPS."""

    protect: list
    photos: dict
    same: list
    detector: object
    judges: dict
    thresholds: dict
    emb: dict
    lpips: object
    calibration: dict

    @classmethod
    def load(cls, protect_names):
        from jaxprotect.face_conventions import calibrate_threshold, false_accept_rate
        from jaxprotect.io import read_photo
        from jaxprotect.judges import load_judge
        from jaxprotect.registry import load_network

        same, diff = read_pairs()
        names = sorted({n for p in same + diff for n in p})
        photos = {n: read_photo(DEEPFACE / n) for n in names}
        detector = load_network("mtcnn")
        judges = {"dlib": load_judge("dlib"), "facenet_casia": load_judge("facenet_casia", detector)}
        cache = Path(os.environ.get("PUBLISHABLE_CACHE", "/tmp/publishable_original_embeddings.npz"))
        emb = original_embeddings(judges, photos, cache)
        thresholds, calibration = {}, {}
        for j, judge in judges.items():
            neg = [judge.score(emb[j][a], emb[j][b]) for a, b in diff if emb[j][a] is not None and emb[j][b] is not None]
            thr = calibrate_threshold(neg, FAR, judge.higher_is_closer)
            thresholds[j] = thr
            calibration[j] = {"threshold": thr, "negatives": len(neg), "far": false_accept_rate(neg, thr, judge.higher_is_closer),
                              "metric": judge.metric}
        protect_same = [(a, b) for a, b in same if a in set(protect_names)]
        return cls(list(protect_names), photos, protect_same, detector, judges, thresholds, emb,
                   load_network("lpips_alex"), calibration)


def original_embeddings(judges: dict, photos: dict, cache: Path) -> dict:
    """{judge: {photo name: embedding or None}} of the unprotected photos, read from ``cache`` (an npz
    read without pickle) when it holds every (judge, photo), else computed and written there (the
    judges are deterministic, so the originals' embeddings are the same every run)."""
    keys = [f"{j}|{n}" for j in judges for n in photos]
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if set(json.loads(str(z["index"]))) >= set(keys):
                return {j: {n: (z[f"{j}|{n}"] if f"{j}|{n}" in z.files else None) for n in photos} for j in judges}
    emb = {j: {n: judge.embed(p) for n, p in photos.items()} for j, judge in judges.items()}
    arrays = {f"{j}|{n}": np.asarray(v) for j in emb for n, v in emb[j].items() if v is not None}
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, index=np.asarray(json.dumps(keys)), **arrays)
    os.replace(tmp, cache)
    return emb


def largest(det) -> int:
    b = np.asarray(det.boxes)
    return int(np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))


# ------------------------------------------------------------------------------------------------
# Methods


@dataclasses.dataclass
class Method:
    """``protect(photo, det, key) -> uint8 photo``; ``surrogates`` names; ``label``; ``settings``."""

    label: str
    surrogates: tuple
    settings: dict
    protect: object


def _crop_method(label, method, surrogates=("mobilefacenet_foamliu",), **cfg):
    from jaxprotect.methods.pixel.protector import (
        FaceChoice,
        PixelProtector,
        load_surrogates,
        method_config,
    )
    from jaxprotect.methods.pixel.targets import skimage_lfw_targets
    from jaxprotect.registry import load_network

    sur, params = load_surrogates(surrogates)
    config = method_config(method, **cfg)
    size = max(s.side for s in sur)
    targets = skimage_lfw_targets(10, size) if method == "tipim" else None
    protector = PixelProtector(method, config, sur, params, load_network("mtcnn"), target_crops=targets,
                               faces=FaceChoice("largest"))

    def protect(photo, det, key):
        return protector.protect(photo, key, detections=det).image

    return Method(label, tuple(surrogates), {"geometry": "crop", **dataclasses.asdict(config)}, protect)


def parse_roi(spec: str):
    """``key=value,...`` -> (surrogate names, RoiAttackConfig). Keys: sur (mfn|ens), floor, ceil,
    chroma (0 = none), cells (0 = photo pixels), steps, step, mom, jit (0/1), eot (0/1), lp (LPIPS weight),
    tref (texture_ref), tw (target weight; 10 LFW-subset identities), norm (sign|l2)."""
    from jaxprotect.methods.pixel.roi_attack import Jitter, RoiAttackConfig
    from jaxprotect.ops.jpeg import EOTConfig
    from jaxprotect.ops.perceptual import TextureBudget

    kv = dict(item.split("=") for item in spec.split(",") if item)
    sur = SURROGATE_SETS[kv.get("sur", "ens")]
    budget = TextureBudget(floor=float(kv.get("floor", 2)), ceiling=float(kv.get("ceil", 10)),
                           texture_ref=float(kv.get("tref", 16)))
    chroma = float(kv.get("chroma", 3)) or None
    cells = int(kv.get("cells", 0)) or None
    config = RoiAttackConfig(steps=int(kv.get("steps", 50)), step_size=float(kv.get("step", 1)), budget=budget,
                             chroma_limit=chroma, face_cells=cells, momentum=float(kv.get("mom", 1)),
                             jitter=Jitter() if int(kv.get("jit", 1)) else None,
                             eot=EOTConfig() if int(kv.get("eot", 0)) else None, lpips_weight=float(kv.get("lp", 0)),
                             target_weight=float(kv.get("tw", 0)), step_norm=kv.get("norm", "sign"))
    return sur, config


def _roi_method(label, surrogates, config, lpips):
    from jaxprotect.methods.pixel.photo_geometry import protect_faces
    from jaxprotect.methods.pixel.protector import load_surrogates

    sur, params = load_surrogates(surrogates)
    targets = None
    if config.target_weight > 0:
        from jaxprotect.methods.pixel.targets import skimage_lfw_targets
        from jaxprotect.methods.tipim import target_features

        targets = target_features(sur, params, skimage_lfw_targets(10, max(s.side for s in sur)))

    def protect(photo, det, key):
        return protect_faces(photo, det.boxes, det.landmarks, [largest(det)], sur, params, key, config,
                             lpips=lpips, target_feats=targets).image

    return Method(label, tuple(surrogates), {"geometry": "photo", **dataclasses.asdict(config)}, protect)


def candidate(name: str, lpips=None) -> Method:
    """A method by name: ``tipim-default``, ``pgd-default`` or ``roi:<spec>`` (:func:`parse_roi`)."""
    if name == "tipim-default":
        return _crop_method(name, "tipim")
    if name == "pgd-default":
        return _crop_method(name, "pgd")
    if name.startswith("roi:"):
        sur, config = parse_roi(name[4:])
        if lpips is None and config.lpips_weight > 0:
            from jaxprotect.registry import load_network

            lpips = load_network("lpips_alex")
        return _roi_method(name, sur, config, lpips)
    raise ValueError(f"unknown method {name!r}")


# ------------------------------------------------------------------------------------------------
# Measuring one method


def judge_pairs(ctx: Context, protected: dict, surrogates) -> dict:
    """Per judge: per pair (a, b) the score of protected a vs original b, success at FAR 1% and at
    dlib 0.6, before and after a real JPEG-75 round trip; 'independent' False when the judge's network
    was a surrogate."""
    from jaxprotect.face_conventions import is_match
    from jaxprotect.ops.jpeg import pillow_roundtrip

    jpeg = {n: pillow_roundtrip(img, 75) for n, img in protected.items()}
    out = {}
    for j, judge in ctx.judges.items():
        emb_p = {n: judge.embed(img) for n, img in protected.items()}
        emb_j = {n: judge.embed(img) for n, img in jpeg.items()}
        rows = []
        for a, b in ctx.same:
            ref = ctx.emb[j][b]
            orig = ctx.emb[j][a]
            if ref is None or orig is None:
                continue
            before = judge.score(orig, ref)
            if not is_match(before, ctx.thresholds[j], judge.higher_is_closer):
                continue  # the judge did not match this pair before protection: not counted
            row = {"pair": [a, b], "before": before}
            for tag, e in (("after", emb_p[a]), ("jpeg75", emb_j[a])):
                score = None if e is None else judge.score(e, ref)
                row[tag] = score
                row[f"{tag}_ok"] = True if score is None else not is_match(score, ctx.thresholds[j], judge.higher_is_closer)
                if j == "dlib":
                    row[f"{tag}_ok06"] = True if score is None else not is_match(score, 0.6, False)
            rows.append(row)
        out[j] = {"independent": j not in {SURROGATE_JUDGE.get(s) for s in surrogates}, "rows": rows}
    return out


def summarise(judged: dict, thresholds: dict) -> dict:
    """Rates, margin quantiles (positive = protected side of the threshold) per judge."""
    out = {}
    for j, d in judged.items():
        rows = d["rows"]
        thr = thresholds[j]
        sign = 1.0 if j == "dlib" else -1.0  # dlib: distance, larger = protected; casia: similarity
        s = {"independent": d["independent"], "pairs": len(rows)}
        for tag in ("after", "jpeg75"):
            s[f"psr_{tag}"] = float(np.mean([r[f"{tag}_ok"] for r in rows])) if rows else None
            margins = [sign * (r[tag] - thr) for r in rows if r[tag] is not None]
            s[f"margin_{tag}"] = [float(v) for v in np.quantile(margins, [0.1, 0.25, 0.5, 0.75, 0.9])] if margins else None
            if j == "dlib":
                s[f"psr06_{tag}"] = float(np.mean([r[f"{tag}_ok06"] for r in rows])) if rows else None
        out[j] = s
    return out


def evaluate_method(ctx: Context, name: str, method: Method, seed: int = 0) -> dict:
    """Protect ctx.protect with ``method``; judge; quality; time. Returns a JSON-able row."""
    import jax

    from jaxprotect.eval.quality import photo_quality

    protected, quality, walls, cpus = {}, {}, [], []
    for i, n in enumerate(ctx.protect):
        photo = ctx.photos[n]
        det = ctx.detector.detect(photo)
        w0, c0 = time.perf_counter(), time.process_time()
        protected[n] = method.protect(photo, det, jax.random.fold_in(jax.random.key(seed), i))
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        q = photo_quality(photo, protected[n], det.boxes[largest(det)], ctx.lpips)
        quality[n] = {k: q[k] for k in ("face_lpips", "face_ssim", "face_psnr", "psnr")}
    judged = judge_pairs(ctx, protected, method.surrogates)
    return {
        "method": name,
        "label": method.label,
        "surrogates": list(method.surrogates),
        "summary": summarise(judged, ctx.thresholds),
        "face_lpips_median": float(np.median([q["face_lpips"] for q in quality.values()])),
        "face_lpips_mean": float(np.mean([q["face_lpips"] for q in quality.values()])),
        "face_ssim_mean": float(np.mean([q["face_ssim"] for q in quality.values()])),
        "wall_median_s": float(np.median(walls)),
        "cpu_median_s": float(np.median(cpus)),
        "photos": quality,
        "pairs": judged,
        "protected_images": protected,
    }
