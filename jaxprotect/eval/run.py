"""Evaluate a folder of protected photos against their originals: the driver behind ``jaxprotect evaluate``.

:class:`Evaluator` loads the detector, judges and metrics once and caches every photo, face and
embedding of the unprotected side, so one evaluator can score several methods' outputs on the same
originals (``experiments/compare_methods.py``)::

    from jaxprotect.eval import EvaluateConfig, Evaluator
    ev = Evaluator(EvaluateConfig(originals_dir="photos/", judges=("auto",)))
    report = ev.evaluate("out_tipim/", "report_tipim/")     # writes report.md, report.json, *.png
    report["summary"]["dodging"]["dlib"]["own_original"]     # PSR at the headline FAR

The protocols, in order: pairing (:mod:`~jaxprotect.eval.pairing`), thresholds calibrated on the
unprotected photos' different-identity pairs and AMT-GAN's fixed ones (:mod:`~jaxprotect.eval.verification`),
dodging against the photo's own original and against the person's other photos, impersonation
against the target, identification against the gallery (:mod:`~jaxprotect.eval.identification`),
quality (:mod:`~jaxprotect.eval.quality`), Fréchet distance / KID on judge embeddings and, with the
weights, FID (:mod:`~jaxprotect.eval.distribution`), and the robustness transforms through files
(:mod:`~jaxprotect.eval.robustness`).
"""
from __future__ import annotations

import collections
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

from jaxprotect.eval.config import EvaluateConfig
from jaxprotect.eval.distribution import feature_statistics, frechet_distance, kid
from jaxprotect.eval.identification import identification_rates, rank_identities
from jaxprotect.eval.topn import identification_score, protection_success_rate
from jaxprotect.eval.judges import EvalJudge, largest_face, load_eval_judges, pairwise_scores
from jaxprotect.eval.pairing import NAME_RULE, identity_of, list_photos, pair_protected, read_identities
from jaxprotect.eval.quality import photo_quality
from jaxprotect.eval.robustness import TRANSFORMS, TransformedFiles
from jaxprotect.eval.verification import calibrate, dodging, impersonation, negative_scores, summarize
from jaxprotect.io import read_photo
from jaxprotect.io.errors import PhotoError

__all__ = ["Evaluator", "evaluate"]

_DISTRIBUTION_PREFERENCE = ("facenet_casia", "facenet_casia_jax", "dlib")
_PHOTOS_KEPT = 4


def _file_key(path) -> str:
    """Cache key of a photo file: its resolved path, size and modification time (a rewritten file is new)."""
    p = Path(path).resolve()
    try:
        st = p.stat()
        return f"{p}|{st.st_size}|{st.st_mtime_ns}"
    except OSError:
        return str(p)


@dataclasses.dataclass
class _Unprotected:
    path: Path
    identity: str
    rule: str


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _nan_rows(vectors) -> np.ndarray:
    """Stack embeddings (None -> a row of NaN) into [n, D]; [n, 1] of NaN when every one is None."""
    dim = next((len(v) for v in vectors if v is not None), 1)
    return np.stack([np.full(dim, np.nan) if v is None else np.asarray(v, np.float64) for v in vectors]) \
        if vectors else np.zeros((0, dim))


class Evaluator:
    """Loads what an evaluation needs once; :meth:`evaluate` scores one folder of protected photos.

    ``config``: :class:`EvaluateConfig`. ``detector``/``judges``: already loaded ones to reuse (an
    MTCNN and a list of :class:`~jaxprotect.eval.judges.EvalJudge`); ``log``: progress messages.
    """

    def __init__(self, config: EvaluateConfig, *, detector=None, judges=None, log=_log):
        from jaxprotect.registry import load_network

        self.config = config
        self.log = log
        self.detector = detector if detector is not None else load_network("mtcnn")
        if judges is None:
            self.judges, self.skipped = load_eval_judges(config.judges, config.recognisers, self.detector)
        else:
            self.judges, self.skipped = list(judges), []
        for message in self.skipped:
            log(f"judge skipped: {message}")
        if not self.judges:
            log("no judge available: only image quality is reported")
        self.lpips, self.lpips_message = None, None
        if config.lpips:
            try:
                self.lpips = load_network(f"lpips_{config.lpips}")
            except (FileNotFoundError, ImportError) as e:
                self.lpips_message = f"LPIPS skipped: {e}"
                log(self.lpips_message)
        self.inception = load_network("inception_fid", config.inception_fid) if config.inception_fid else None
        self.identities = read_identities(config.identities) if config.identities else None
        self._photos: collections.OrderedDict = collections.OrderedDict()  # a few decoded photos (they can be 50 MP)
        self._failed: dict = {}
        self._faces: dict = {}
        self._embeddings: dict = {}

    # ------------------------------------------------------------------ cached per photo
    def photo(self, path) -> np.ndarray:
        """uint8 [H, W, 3] of ``path``; the last few photos are kept, a :class:`PhotoError` is remembered."""
        key = _file_key(path)
        if key in self._failed:
            raise self._failed[key]
        if key not in self._photos:
            try:
                self._photos[key] = read_photo(path)
            except PhotoError as e:
                self._failed[key] = e
                raise
            while len(self._photos) > _PHOTOS_KEPT:
                self._photos.popitem(last=False)
        self._photos.move_to_end(key)
        return self._photos[key]

    def face(self, key: str, photo: np.ndarray):
        """The largest MTCNN face of ``photo`` (cached under ``key``), or None."""
        if key not in self._faces:
            self._faces[key] = largest_face(self.detector.detect(photo))
        return self._faces[key]

    def embedding(self, judge: EvalJudge, key: str, photo: np.ndarray):
        """``judge``'s embedding of ``photo`` (cached under ``key``), or None when it sees no face."""
        k = (judge.name, key)
        if k not in self._embeddings:
            face = self.face(key, photo)
            v = judge.embed(photo, face)
            self._embeddings[k] = None if v is None else np.asarray(v, np.float64)
        return self._embeddings[k]

    def _file_embedding(self, judge, path):
        key = _file_key(path)
        if (judge.name, key) in self._embeddings:
            return self._embeddings[(judge.name, key)]
        return self.embedding(judge, key, self.photo(path))

    # ------------------------------------------------------------------ the evaluation
    def _unprotected(self, errors) -> tuple[list[_Unprotected], list[_Unprotected]]:
        """(calibration pool: originals + targets + gallery, gallery) of readable photos."""
        cfg = self.config
        seen, pool, gallery = set(), [], []
        folders = [(cfg.originals_dir, False), (cfg.targets_dir, False), (cfg.gallery_dir, True)]
        for folder, is_gallery in folders:
            if folder is None:
                continue
            for p in list_photos(folder)[0]:
                if not self._readable(p, errors):
                    continue
                ident, rule = identity_of(p, self.identities)
                item = _Unprotected(p, ident, rule)
                if p.resolve() not in seen:
                    pool.append(item)
                    seen.add(p.resolve())
                if is_gallery:
                    gallery.append(item)
        return pool, gallery

    def _readable(self, path, errors) -> bool:
        try:
            self.photo(path)
            return True
        except PhotoError as e:
            if str(path) not in {e_["path"] for e_ in errors}:
                errors.append({"path": str(path), "error": str(e)})
            return False

    def evaluate(self, protected_dir, output_dir=None) -> dict:
        """Score every protected photo of ``protected_dir``; write the report into ``output_dir`` (if given).

        Returns the report dict (what ``report.json`` holds).
        """
        cfg = self.config
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        pairing = pair_protected(protected_dir, cfg.originals_dir, cfg.targets_dir, cfg.mapping)
        errors: list = []
        pool, gallery = self._unprotected(errors)
        identity = {str(u.path.resolve()): u.identity for u in pool}
        rules = sorted({u.rule for u in pool})
        unlabelled = sum(u.rule == "own file" for u in pool)
        pairs = []
        for p, o, t in pairing.pairs:
            if self._readable(p, errors) and self._readable(o, errors):
                if t is not None and not self._readable(t, errors):
                    t = None
                pairs.append((p, o, t))
        self.log(f"{len(pairs)} protected photos paired ({len(pairing.unmatched)} unmatched), "
                 f"{len(pool)} unprotected photos for calibration, {len(self.judges)} judges")
        records = [self._pair_record(p, o, t, pairing.how.get(p), identity) for p, o, t in pairs]
        report = {
            "protected_dir": str(protected_dir),
            "config": _config_dict(cfg),
            "pairing": {"rule": NAME_RULE, "pairs": len(pairs),
                        "unmatched": [{"path": str(p), "reason": r} for p, r in pairing.unmatched],
                        "skipped": [str(p) for p in pairing.skipped],
                        "originals_without_protected": [str(p) for p in pairing.unprotected]},
            "errors": errors,
            "identities": {"rules": rules, "count": len(set(identity.values())), "photos": len(pool),
                           "unlabelled": unlabelled,
                           "warning": None if unlabelled < 2 else
                           f"{unlabelled} photos have no identity label (no identities file, no <identity>_<n> name): "
                           "each is taken as its own person; same-person photos among them would count as "
                           "different-person pairs in the calibration"},
            "judges_skipped": self.skipped,
            "lpips": {"network": f"lpips_{cfg.lpips}" if self.lpips is not None else None, "message": self.lpips_message},
            "judges": {},
            "pairs_detail": records,
        }
        for judge in self.judges:
            self.log(f"judge {judge.name}: embedding {len(pool)} unprotected and {len(pairs)} protected photos")
            report["judges"][judge.name] = self._judge_report(judge, pool, gallery, pairs, identity, records)
        report["quality"] = {k: summarize([r["quality"][k] for r in records])
                             for k in ("psnr", "ssim", "face_psnr", "face_ssim", "face_lpips")}
        report["distribution"] = self._distribution(pairs)
        report["summary"] = _summary(report, cfg)
        report["seconds"] = {"wall": time.perf_counter() - t_wall, "cpu": time.process_time() - t_cpu}
        if output_dir is not None:
            from jaxprotect.eval.report import write_report

            report["written"] = write_report(report, output_dir, plots=cfg.plots)
        return report

    def _pair_record(self, p, o, t, how, identity) -> dict:
        orig, prot = self.photo(o), self.photo(p)
        face = self.face(_file_key(o), orig)
        quality = photo_quality(orig, prot, None if face is None else face.box, self.lpips)
        return {"protected": str(p), "original": str(o), "target": None if t is None else str(t), "paired_by": how,
                "identity": identity.get(str(Path(o).resolve())),
                "target_identity": None if t is None else identity.get(str(Path(t).resolve())),
                "original_face_found": face is not None, "quality": quality, "scores": {}}

    # ------------------------------------------------------------------ one judge
    def _judge_report(self, judge: EvalJudge, pool, gallery, pairs, identity, records) -> dict:
        cfg, hic, metric = self.config, judge.higher_is_closer, judge.metric
        pool_emb = _nan_rows([self._file_embedding(judge, u.path) for u in pool])
        index = {str(u.path.resolve()): i for i, u in enumerate(pool)}
        scores = pairwise_scores(pool_emb, pool_emb, metric)
        negatives = negative_scores(scores, [u.identity for u in pool])
        thresholds = {"calibrated": calibrate(negatives, cfg.fars, hic)}
        if judge.fixed_thresholds:
            thresholds[judge.fixed_source] = {f: {"threshold": judge.fixed_thresholds[f], "far_reached": None,
                                                  "negatives": None} for f in cfg.fars if f in judge.fixed_thresholds}
        prot_emb = _nan_rows([self._file_embedding(judge, p) for p, _, _ in pairs])
        sets = self._pair_scores(judge, pairs, pool, pool_emb, index, prot_emb, identity)
        for rec, own_b, own_a in zip(records, sets["own_before"], sets["own_after"]):
            rec["scores"][judge.name] = {"own_original_before": _f(own_b), "own_original_after": _f(own_a)}
        out = {
            "description": judge.description, "metric": metric, "higher_is_closer": hic,
            "no_face": {"unprotected": int(np.isnan(pool_emb[:, 0]).sum()), "protected": int(np.isnan(prot_emb[:, 0]).sum())},
            "thresholds": thresholds,
            "negatives": summarize(negatives),
            "dodging": self._protocols(sets, thresholds, hic),
            "identification": self._identification(judge, gallery, pairs, identity, prot_emb) if gallery else None,
            "robustness": self._robustness(judge, pairs, pool, pool_emb, index, identity, thresholds["calibrated"], sets),
        }
        out["impersonation"] = out["dodging"].pop("impersonation")
        return out

    def _pair_scores(self, judge, pairs, pool, pool_emb, index, prot_emb, identity) -> dict:
        """Scores before/after for the dodging (own original, other photos) and impersonation pairs."""
        metric = judge.metric
        own_b, own_a, other_b, other_a, imp_b, imp_a = [], [], [], [], [], []
        for k, (p, o, t) in enumerate(pairs):
            o_key = str(Path(o).resolve())
            e_o = pool_emb[index[o_key]] if o_key in index else _nan_rows([self._file_embedding(judge, o)])[0]
            e_p = prot_emb[k]
            own_b.append(pairwise_scores(e_o, e_o, metric)[0, 0])
            own_a.append(pairwise_scores(e_p, e_o, metric)[0, 0])
            refs = [i for i, u in enumerate(pool) if u.identity == identity.get(o_key) and str(u.path.resolve()) != o_key]
            if refs:
                other_b += list(pairwise_scores(e_o, pool_emb[refs], metric)[0])
                other_a += list(pairwise_scores(e_p, pool_emb[refs], metric)[0])
            if t is not None:
                e_t = _nan_rows([self._file_embedding(judge, t)])[0]
                imp_b.append(pairwise_scores(e_o, e_t, metric)[0, 0])
                imp_a.append(pairwise_scores(e_p, e_t, metric)[0, 0])
        return {"own_before": own_b, "own_after": own_a, "other_before": other_b, "other_after": other_a,
                "imp_before": imp_b, "imp_after": imp_a}

    def _protocols(self, sets, thresholds, hic) -> dict:
        out = {"own_original": {}, "other_photos": None, "impersonation": None}
        if sets["other_before"]:
            out["other_photos"] = {}
        if sets["imp_before"]:
            out["impersonation"] = {}
        for source, table in thresholds.items():
            for key in out:
                if out[key] is not None:
                    out[key][source] = {}
            for far, th in table.items():
                thr = th["threshold"]
                if thr is None:
                    continue
                out["own_original"][source][far] = dodging(sets["own_before"], sets["own_after"], thr, hic)
                if out["other_photos"] is not None:
                    out["other_photos"][source][far] = dodging(sets["other_before"], sets["other_after"], thr, hic)
                if out["impersonation"] is not None:
                    out["impersonation"][source][far] = impersonation(sets["imp_before"], sets["imp_after"], thr, hic)
        return out

    def _identification(self, judge, gallery, pairs, identity, prot_emb) -> dict:
        ks = self.config.ranks
        g_emb = _nan_rows([self._file_embedding(judge, u.path) for u in gallery])
        g_ids = [u.identity for u in gallery]
        g_keys = [str(u.path.resolve()) for u in gallery]
        rank_after, rank_before, true_ids, target_ids = [], [], [], []
        topn = {"before": {n: [] for n in ks}, "after": {n: [] for n in ks}}
        for k, (p, o, t) in enumerate(pairs):
            o_key = str(Path(o).resolve())
            keep = [i for i, g in enumerate(g_keys) if g != o_key]
            ids = [g_ids[i] for i in keep]
            e_o = _nan_rows([self._file_embedding(judge, o)])
            after = pairwise_scores(prot_emb[k], g_emb[keep], judge.metric)[0]
            before = pairwise_scores(e_o, g_emb[keep], judge.metric)[0]
            rank_after.append(rank_identities(after, ids, judge.higher_is_closer))
            rank_before.append(rank_identities(before, ids, judge.higher_is_closer))
            true_ids.append(identity.get(o_key))
            target_ids.append(None if t is None else identity.get(str(Path(t).resolve())))
            comparisons = sum(1 for i in ids if i == true_ids[-1])
            if comparisons and np.all(np.isfinite(after)) and np.all(np.isfinite(before)):
                for when, scores in (("before", before), ("after", after)):
                    for n in ks:
                        topn[when][n].append(identification_score(scores, ids, true_ids[-1], n, comparisons,
                                                                  higher_is_closer=judge.higher_is_closer))
        has_targets = any(t is not None for t in target_ids)
        facecloak = {"probes": len(topn["after"][ks[0]]) if ks else 0,
                     **{f"psr_top{n}": {w: (protection_success_rate(topn[w][n]) if topn[w][n] else None)
                                        for w in ("before", "after")} for n in ks}}
        return {"gallery_photos": len(gallery), "gallery_identities": len(set(g_ids)),
                "before": identification_rates(rank_before, true_ids, target_ids if has_targets else None, ks, g_ids),
                "after": identification_rates(rank_after, true_ids, target_ids if has_targets else None, ks, g_ids),
                "facecloak_top_n": facecloak}

    def _robustness(self, judge, pairs, pool, pool_emb, index, identity, calibrated, clean_sets) -> dict:
        cfg = self.config
        if not cfg.robustness or not pairs:
            return {}
        out = {}
        with TransformedFiles() as files:
            for name in cfg.robustness:
                emb = []
                for k, (p, _, _) in enumerate(pairs):
                    key = f"{_file_key(p)}#{name}"
                    if (judge.name, key) not in self._embeddings:
                        self.embedding(judge, key, files.get(self.photo(p), name, f"protected{k}"))
                    emb.append(self._embeddings[(judge.name, key)])
                sets = self._pair_scores(judge, pairs, pool, pool_emb, index, _nan_rows(emb), identity)
                table = self._protocols(sets, {"calibrated": calibrated}, judge.higher_is_closer)
                entry = {"description": TRANSFORMS[name][2], **table}
                if cfg.robustness_control:
                    entry["control"] = self._control(judge, name, pairs, pool, pool_emb, index, identity, calibrated, files)
                out[name] = entry
        return out

    def _control(self, judge, name, pairs, pool, pool_emb, index, identity, calibrated, files) -> dict:
        """Dodging 'success' of the transformed ORIGINALS: what the transform alone does."""
        emb = []
        for k, (_, o, _) in enumerate(pairs):
            key = f"{_file_key(o)}#{name}"
            if (judge.name, key) not in self._embeddings:
                self.embedding(judge, key, files.get(self.photo(o), name, f"original{k}"))
            emb.append(self._embeddings[(judge.name, key)])
        sets = self._pair_scores(judge, [(o, o, None) for _, o, _ in pairs], pool, pool_emb, index, _nan_rows(emb),
                                 identity)
        table = self._protocols(sets, {"calibrated": calibrated}, judge.higher_is_closer)
        return {"own_original": table["own_original"], "other_photos": table["other_photos"]}

    # ------------------------------------------------------------------ set-level distances
    def _distribution(self, pairs) -> dict:
        cfg = self.config
        out = {}
        by_name = {j.name: j for j in self.judges}
        chosen = next((by_name[n] for n in _DISTRIBUTION_PREFERENCE if n in by_name), self.judges[0] if self.judges else None)
        originals = list(dict.fromkeys(o for _, o, _ in pairs))
        if chosen is not None:
            x = [v for v in (self._file_embedding(chosen, o) for o in originals) if v is not None]
            y = [v for v in (self._file_embedding(chosen, p) for p, _, _ in pairs) if v is not None]
            out["embeddings"] = _set_distances(np.array(x), np.array(y), f"{chosen.name} embeddings", cfg)
        if self.inception is not None:
            import jax.numpy as jnp

            from jaxprotect.ops.resize import interpolate

            def pool3(path):
                x = jnp.asarray(self.photo(path), jnp.float32)[None] / 255.0
                return np.asarray(self.inception(interpolate(x, (299, 299), mode="bilinear")))[0]

            fx = np.array([pool3(o) for o in originals])
            fy = np.array([pool3(p) for p, _, _ in pairs])
            out["inception"] = _set_distances(fx, fy, "FID InceptionV3 pool3 (pytorch-fid weights)", cfg, is_fid=True)
        return out


def _set_distances(x, y, label, cfg, is_fid=False) -> dict:
    out = {"features": label, "n_originals": int(len(x)), "n_protected": int(len(y)),
           "dimension": int(x.shape[1]) if x.ndim == 2 and len(x) else None}
    if len(x) < 2 or len(y) < 2:
        out["note"] = "fewer than 2 embeddings on a side: no distance"
        return out
    fd = frechet_distance(*feature_statistics(x), *feature_statistics(y))
    out["frechet_name"] = "FID" if is_fid else f"Frechet distance on {label} (not FID)"
    out["frechet"] = fd
    out["kid_name"] = "KID (InceptionV3 pool3)" if is_fid else f"KID on {label} (not Inception)"
    out["kid"] = kid(x, y, subsets=cfg.kid_subsets, subset_size=cfg.kid_subset_size, seed=cfg.seed)
    if min(len(x), len(y)) <= out["dimension"]:
        out["note"] = (f"{min(len(x), len(y))} photos for {out['dimension']}-D features: the covariance is rank-"
                       "deficient and the Frechet distance biased upwards; compare it only between runs of the same size")
    return out


def _f(v):
    return None if v is None or not np.isfinite(v) else float(v)


def _config_dict(cfg: EvaluateConfig) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


def _summary(report, cfg) -> dict:
    far = cfg.headline_far
    out = {"pairs": report["pairing"]["pairs"], "unmatched": len(report["pairing"]["unmatched"]),
           "headline_far": far,
           "face_ssim_mean": (report["quality"]["face_ssim"] or {}).get("mean"),
           "face_psnr_mean": (report["quality"]["face_psnr"] or {}).get("mean"),
           "face_lpips_mean": (report["quality"]["face_lpips"] or {}).get("mean"),
           "dodging": {}, "impersonation": {}, "robustness": {}}
    for name, j in report["judges"].items():
        row = {}
        for kind in ("own_original", "other_photos"):
            table = j["dodging"][kind]
            res = table["calibrated"].get(far) if table else None
            row[kind] = None if res is None else res["psr"]
        row["threshold"] = j["thresholds"]["calibrated"][far]["threshold"]
        out["dodging"][name] = row
        if j["impersonation"]:
            out["impersonation"][name] = {src: (t.get(far) or {}).get("psr") for src, t in j["impersonation"].items()}
        out["robustness"][name] = {
            tf: {kind: ((e[kind] or {}).get("calibrated", {}).get(far) or {}).get("psr")
                 for kind in ("own_original", "other_photos")}
            for tf, e in j["robustness"].items()}
    return out


def evaluate(protected_dir, output_dir, config: EvaluateConfig) -> dict:
    """One-shot :meth:`Evaluator.evaluate`: load everything, score ``protected_dir``, write ``output_dir``."""
    os.makedirs(output_dir, exist_ok=True)
    return Evaluator(config).evaluate(protected_dir, output_dir)
