"""Protection a person would publish (issue 15): today's defaults against the fullres presets, on photos not tuned on.

Photos (test data only, never committed):
* deepface same-person pairs: the first photo of each pair is protected and the judges compare it
  with the pair's OTHER photo (as experiments/real_dodging.py). The 4 photos the presets were
  tuned on (publishable_common.TUNE_PHOTOS) and their pairs are left out: 12 protected photos, the
  pairs that each judge matched before protection;
* the FFHQ sample, scikit-image's astronaut, and two group photos (deepface's 7-face selfie and the
  couple): no second photo of these people, so each protected face is compared with the same face
  in the ORIGINAL photo (every face the method protected; the judge's own detector must find it).

Judges: dlib (ResNet, Euclidean) and FaceNet-CASIA (OpenCV dnn, cosine), thresholds calibrated at
FAR 1% on deepface's 262 different-person pairs (and dlib's usual 0.6). A judge is never counted
for a run whose surrogates include its network: the default ensemble (MobileFaceNet + the JAX port
of FaceNet-CASIA) is judged independently by dlib only; the leave-one-out runs (MobileFaceNet
alone) are judged by both. Re-compression: real JPEG 90/75/50 through files
(:mod:`jaxprotect.eval.robustness`). Quality on the MTCNN box of the face: SSIM, PSNR, LPIPS-Alex
(real weights, :mod:`jaxprotect.eval.quality`). Time per photo: wall and process CPU, median.

Run one method per call (results are kept per method, so a run can be spread out):
    python experiments/publishable.py run METHOD      (METHOD in RUNS)
    python experiments/publishable.py render          -> experiments/results/publishable.{md,json} + figures
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from publishable_common import (  # noqa: E402
    FACES,
    SURROGATE_JUDGE,
    SURROGATE_SETS,
    TUNE_PHOTOS,
    Context,
    read_pairs,
)

RESULTS = HERE / "results"
RUN_DIR = RESULTS / "publishable_runs"
KEEP_DIR = Path(os.environ.get("PUBLISHABLE_KEEP", "/tmp/publishable_images"))  # protected photos (not committed)
JPEGS = ("jpeg90", "jpeg75", "jpeg50")
EXTRA = {"ffhq_sample": FACES / "ffhq_sample" / "input_img.jpg", "couple": FACES / "deepface" / "couple.jpg",
         "selfie": FACES / "deepface" / "selfie-many-people.jpg"}

# name -> (PixelSettings fields, label)
RUNS = {
    "tipim-default": (dict(method="tipim", surrogates=("mobilefacenet_foamliu",)), "today's default: TIP-IM, crop, eps 12, 100 steps"),
    "pgd-default": (dict(method="pgd", surrogates=("mobilefacenet_foamliu",)), "PGD, crop, eps 16, 20 steps"),
    "mifgsm-default": (dict(method="mifgsm", surrogates=("mobilefacenet_foamliu",)), "MI-FGSM, crop, eps 16, 10 steps"),
    "tidim-default": (dict(method="tidim", surrogates=("mobilefacenet_foamliu",)), "TI-DIM, crop, eps 16, 10 steps"),
    "fullres-subtle": (dict(strength="subtle", surrogates=SURROGATE_SETS["ens"]), "fullres subtle, ensemble"),
    "fullres-balanced": (dict(strength="balanced", surrogates=SURROGATE_SETS["ens"]), "fullres balanced, ensemble"),
    "fullres-strong": (dict(strength="strong", surrogates=SURROGATE_SETS["ens"]), "fullres strong, ensemble"),
    "fullres-subtle-mfn": (dict(strength="subtle", surrogates=SURROGATE_SETS["mfn"]), "fullres subtle, MobileFaceNet only"),
    "fullres-balanced-mfn": (dict(strength="balanced", surrogates=SURROGATE_SETS["mfn"]), "fullres balanced, MobileFaceNet only"),
    "fullres-strong-mfn": (dict(strength="strong", surrogates=SURROGATE_SETS["mfn"]), "fullres strong, MobileFaceNet only"),
    "fullres-balanced-eot": (dict(strength="balanced", eot=True, surrogates=SURROGATE_SETS["ens"]), "fullres balanced + JPEG/resize EOT, ensemble"),
    "fullres-balanced-eps16": (dict(strength="balanced", eps=16.0, surrogates=SURROGATE_SETS["ens"]),
                               "fullres balanced, budget ceiling 16 (floor 4), ensemble"),
}


@dataclasses.dataclass
class RunSpec:
    """How one run protects a photo.

    ``protector.protect(photo, key, detections=, path=)`` returns an object with ``image`` (uint8
    [H, W, 3]), ``faces`` (each with ``index``, ``box`` x1 y1 x2 y2 in photo pixels, ``prob``),
    ``skipped`` and ``quality``; ``surrogates`` the registry names of the recognisers it attacks;
    ``settings`` a JSON-able description; ``search`` how faces are found before protecting; ``label``.
    """

    protector: object
    surrogates: tuple
    settings: dict
    search: object
    label: str


def pixel_run(name: str, detector) -> RunSpec:
    """The :class:`RunSpec` of a pixel-method run of :data:`RUNS` (``PixelSettings`` + ``build_protector``)."""
    from jaxprotect.methods.pixel.run import PixelSettings, build_protector

    fields, label = RUNS[name]
    settings = PixelSettings(judges=(), **fields)
    protector, _ = build_protector(settings, detector)
    described = {"fields": {k: (list(v) if isinstance(v, tuple) else v) for k, v in fields.items()},
                 "config": dataclasses.asdict(protector.config)}
    return RunSpec(protector, settings.surrogate_names(), described, settings.search, label)


def report_photos(ctx: Context) -> dict:
    """name -> uint8 photo: the deepface photos protected (not tuned on) and the extra photos."""
    import skimage.data

    from jaxprotect.io import read_photo

    photos = {n: ctx.photos[n] for n in ctx.protect}
    for name, path in EXTRA.items():
        photos[name] = read_photo(path)
    photos["astronaut"] = np.asarray(skimage.data.astronaut(), np.uint8)
    return photos


def _judge_scores(ctx, judge_name, image, transformed):
    judge = ctx.judges[judge_name]
    return judge.embed(image), {t: judge.embed(im) for t, im in transformed.items()}


def run(name: str, seed: int = 0, build=pixel_run) -> dict:
    """Protect every report photo with run ``name``; judge; measure. Writes RUN_DIR/name.json.

    ``build(name, detector) -> RunSpec`` makes the protector (default: the pixel runs of :data:`RUNS`);
    photo ``i`` (in :func:`report_photos` order) is protected with ``fold_in(key(seed), i)``."""
    import jax

    from jaxprotect.detect.find_faces import find_faces
    from jaxprotect.eval.quality import photo_quality
    from jaxprotect.eval.robustness import transformed_photo
    from jaxprotect.face_conventions import is_match
    from jaxprotect.judges.verdict import Threshold, photo_verdict

    same, _ = read_pairs()
    tuned = set(TUNE_PHOTOS)
    protect_names = sorted({a for a, _ in same} - tuned, key=lambda s: int("".join(c for c in s if c.isdigit())))
    ctx = Context.load(protect_names)
    photos = report_photos(ctx)
    spec = build(name, ctx.detector)
    protector, surrogates = spec.protector, tuple(spec.surrogates)
    surrogate_judges = {SURROGATE_JUDGE.get(s) for s in surrogates} - {None}
    KEEP_DIR.mkdir(parents=True, exist_ok=True)
    per_photo = {}
    load0 = os.getloadavg()
    for i, (pname, photo) in enumerate(photos.items()):
        det = find_faces(ctx.detector, photo, spec.search)
        key = jax.random.fold_in(jax.random.key(seed), i)
        w0, c0 = time.perf_counter(), time.process_time()
        result = protector.protect(photo, key, detections=det, path=pname)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        out = result.image
        np.save(KEEP_DIR / f"{name}__{pname}.npy", out)
        transformed = {t: transformed_photo(out, t) for t in JPEGS}
        faces = [{"index": f.index, "box": f.box, "prob": f.prob,
                  "quality": {k: v for k, v in photo_quality(photo, out, np.asarray(f.box), ctx.lpips).items()
                              if k in ("face_ssim", "face_psnr", "face_lpips")}} for f in result.faces]
        row = {"wall_s": wall, "cpu_s": cpu, "faces": faces, "skipped": len(result.skipped),
               "found": len(det.boxes), "photo_quality": result.quality}
        if pname in ctx.photos and pname in protect_names:  # a deepface pair photo: judged against the other photo
            judged = {}
            for j, judge in ctx.judges.items():
                e, et = _judge_scores(ctx, j, out, transformed)
                judged[j] = {"after": e, **et}
            pairs = []
            for a, b in ctx.same:
                if a != pname:
                    continue
                for j, judge in ctx.judges.items():
                    ref, orig = ctx.emb[j][b], ctx.emb[j][a]
                    if ref is None or orig is None:
                        continue
                    before = judge.score(orig, ref)
                    if not is_match(before, ctx.thresholds[j], judge.higher_is_closer):
                        continue
                    entry = {"judge": j, "pair": [a, b], "before": before}
                    for tag, emb in judged[j].items():
                        entry[tag] = None if emb is None else judge.score(emb, ref)
                    pairs.append(entry)
            row["pairs"] = pairs
        else:  # self-match: every protected face vs the same face of the original
            thresholds = {ctx.judges[j].name: Threshold(ctx.thresholds[j], "FAR 1% on deepface") for j in ctx.judges}
            boxes = np.asarray([f.box for f in result.faces])
            verdicts = {"after": photo_verdict(list(ctx.judges.values()), photo, out, boxes, thresholds=thresholds,
                                               jpeg_quality=None)}
            for t in JPEGS:
                verdicts[t] = photo_verdict(list(ctx.judges.values()), photo, transformed[t], boxes,
                                            thresholds=thresholds, jpeg_quality=None)
            inv = {ctx.judges[j].name: j for j in ctx.judges}
            row["self"] = [{"judge": inv[r["judge"]], "face": f["index"],
                            **{tag: v["faces"][k]["judges"][m]["score"] for tag, v in verdicts.items()},
                            "found": r["original_found"]}
                           for k, f in enumerate(verdicts["after"]["faces"]) for m, r in enumerate(f["judges"])]
        per_photo[pname] = row
        print(f"{name} {pname}: {len(result.faces)} face(s), {wall:.0f}s wall / {cpu:.0f}s cpu, "
              f"LPIPS {np.mean([f['quality']['face_lpips'] for f in faces]):.4f}", flush=True)
    data = {"name": name, "label": spec.label, "settings": spec.settings, "seed": seed,
        "surrogates": list(surrogates), "surrogate_judges": sorted(surrogate_judges),
        "thresholds": ctx.thresholds, "calibration": ctx.calibration, "photos": per_photo,
        "loadavg": [load0, os.getloadavg()], "tuned_on": sorted(tuned)}
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    (RUN_DIR / f"{name}.json").write_text(json.dumps(data, indent=1, default=float) + "\n")
    return data


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "run":
        for name in args[1:]:
            run(name)
        return 0
    if args and args[0] == "render":
        from publishable_render import render

        return render(RUN_DIR, RESULTS / "publishable")
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
