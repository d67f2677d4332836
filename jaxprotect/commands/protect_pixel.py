"""``jaxprotect protect --method tipim|pgd|mifgsm|tidim PHOTOS... -o OUT/``: pixel-space protection.

For each photo: read it, find and align every face (MTCNN, 5 landmarks), protect the aligned
faces against the surrogate recognisers, paste them back with a feathered seam, and write into
OUT/ ``<stem>.protected.png`` (no metadata), ``<stem>.side_by_side.png`` (original | protected)
and ``<stem>.report.json`` (method, settings, seed, similarities, PSNR/SSIM, time). A photo that
cannot be read or has no face gets a message and nothing written; the batch goes on and the exit
status is non-zero at the end.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

PIXEL_METHODS = ("tipim", "pgd", "mifgsm", "tidim")
SKIMAGE_LFW = "skimage-lfw"
SYNTHETIC = "synthetic"


def add_arguments(parser):
    g = parser.add_argument_group("pixel methods (tipim, pgd, mifgsm, tidim)")
    g.add_argument("--surrogates", default="mobilefacenet_foamliu",
                   help="comma-separated recognisers to attack (registry names; default: the shipped "
                        "mobilefacenet_foamliu)")
    g.add_argument("--eps", type=float, default=None,
                   help="L-inf budget in grey levels of 255 (default: tipim 12, pgd/mifgsm/tidim 16)")
    g.add_argument("--steps", type=int, default=None, help="iterations (default: tipim 100, pgd 20, mifgsm/tidim 10; clip2protect 50)")
    g.add_argument("--step-size", type=float, default=None,
                   help="step in grey levels (default: tipim 1.5*eps/steps, pgd 2.5*eps/steps, mifgsm/tidim eps/steps)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--dodge", action="store_true", help="push away from the photo's own identity (default)")
    mode.add_argument("--impersonate", action="store_true", help="pull towards the identity of --target")
    g.add_argument("--target", default=None,
                   help="photo of the identity to impersonate (pixel methods: with --impersonate; also "
                        "clip2protect's target)")
    g.add_argument("--targets", default=SKIMAGE_LFW,
                   help=f"tipim target identities: a folder of photos (one face each), '{SKIMAGE_LFW}' (default: "
                        f"faces of scikit-image's LFW subset, no download) or '{SYNTHETIC}' (random virtual "
                        "identities drawn from --seed)")
    g.add_argument("--num-targets", type=int, default=10, help="tipim: number of LFW-subset or synthetic targets (10)")
    g.add_argument("--gain", choices=("gain1", "gain2", "gain3"), default="gain3", help="tipim: gain function")
    g.add_argument("--gamma", type=float, default=0.0, help="tipim: MMD naturalness weight (0 = off, as TIP-IM's code)")
    g.add_argument("--norm", choices=("l2", "linf"), default="l2", help="tipim: step normalisation")
    g.add_argument("--output-format", choices=("png", "webp", "jpg"), default="png",
                   help="protected photo format (png, lossless; jpg at quality 95 weakens the protection)")


def _config(args):
    from jaxprotect.methods.photo import method_config

    extra = {}
    if args.method == "tipim":
        extra = {"gain": args.gain, "gamma": args.gamma, "norm": args.norm}
    return method_config(args.method, args.eps, args.steps, args.step_size, **extra)


def aligned_face(path, detector, size: int):
    """The aligned crop [size, size, 3] float32 0..255 of the largest face in the photo at ``path``."""
    import numpy as np

    from jaxprotect.detect.align import align_face
    from jaxprotect.io import NoFaceError, read_photo

    photo = read_photo(path)
    det = detector.detect(photo)
    if len(det.boxes) == 0:
        raise NoFaceError(path, "no face detected in this target photo")
    areas = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
    return align_face(photo, det.landmarks[int(np.argmax(areas))], size).image


def skimage_lfw_targets(num: int, size: int):
    """``num`` faces of scikit-image's ``lfw_subset`` (25x25 grey LFW crops), evenly spaced over its
    100 faces, as RGB [num, size, size, 3] float32 0..255 (bilinear upscaling)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import skimage.data

    faces = skimage.data.lfw_subset()[:100]
    idx = np.linspace(0, 99, num).round().astype(int)
    grey = np.repeat(faces[idx][..., None], 3, axis=-1).astype(np.float32) * 255.0
    return np.asarray(jax.image.resize(jnp.asarray(grey), (num, size, size, 3), "bilinear"))


def target_crops(args, detector, size: int):
    """TIP-IM target crops from ``--targets`` (None for synthetic targets); raises on an unusable folder."""
    import numpy as np

    from jaxprotect.io import run_batch

    if args.targets == SYNTHETIC:
        return None
    if args.targets == SKIMAGE_LFW:
        return skimage_lfw_targets(args.num_targets, size)
    folder = Path(args.targets)
    if not folder.is_dir():
        raise SystemExit(f"error: --targets {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    report = run_batch(files, lambda p: aligned_face(p, detector, size), quiet=True)
    for item in report.failed:
        print(f"skipping target {item.path}: {item.error}", file=sys.stderr)
    crops = [item.value for item in report.succeeded]
    if not crops:
        raise SystemExit(f"error: no usable target face in {folder}")
    return np.stack(crops)


def _unique_stem(path: str, used: set) -> str:
    stem = Path(path).stem or "photo"
    name, n = stem, 1
    while name in used:
        n += 1
        name = f"{stem}-{n}"
    used.add(name)
    return name


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (temporary file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def side_by_side(original, protected, gap: int = 8):
    """original | protected on one white canvas (uint8 [H, 2W + gap, 3])."""
    import numpy as np

    h, w = original.shape[:2]
    canvas = np.full((h, 2 * w + gap, 3), 255, np.uint8)
    canvas[:, :w] = original
    canvas[:, w + gap:] = protected
    return canvas


def report_dict(path, args, protector, result, outputs: dict) -> dict:
    """The per-photo JSON report."""
    import dataclasses

    import jax

    faces = []
    for f in result.faces:
        d = dataclasses.asdict(f)
        d["matrix"] = [[float(v) for v in row] for row in f.matrix]
        faces.append(d)
    return {
        "input": os.fspath(path),
        "outputs": outputs,
        "method": args.method,
        "mode": "impersonate" if protector.impersonate_crop is not None else "dodge",
        "settings": dataclasses.asdict(protector.config),
        "eps_grey_levels": protector_eps(protector),
        "surrogates": [s.name for s in protector.surrogates],
        "crop_size": protector.crop_size,
        "targets": args.targets if args.method == "tipim" and protector.impersonate_crop is None else None,
        "seed": args.seed,
        "faces": faces,
        "photo_quality": result.quality,
        "seconds": round(result.seconds, 2),
        "trace": result.trace,
        "jax": jax.__version__,
    }


def protector_eps(protector) -> float:
    from jaxprotect.methods.photo import eps_levels

    return eps_levels(protector.config)


def build_protector(args, detector):
    """The :class:`PixelProtector` the options describe (loads the surrogates)."""
    from jaxprotect.methods.photo import PixelProtector, load_surrogates

    names = [n.strip() for n in args.surrogates.split(",") if n.strip()]
    surrogates, params = load_surrogates(names)
    size = max(max(s.input_size) for s in surrogates)
    impersonate = None
    if args.impersonate:
        if not args.target:
            raise SystemExit("error: --impersonate needs --target PHOTO")
        impersonate = aligned_face(args.target, detector, size)
    # TIP-IM with --impersonate: the one target identity is the --target face.
    crops = target_crops(args, detector, size) if args.method == "tipim" and impersonate is None else None
    return PixelProtector(args.method, _config(args), surrogates, params, detector, target_crops=crops,
                          impersonate_crop=impersonate, num_targets=args.num_targets)


def protect_one(path, index, args, protector, out_dir: Path, used: set, progress_factory=None) -> dict:
    """Protect one photo and write its three outputs; returns the report."""
    import jax

    from jaxprotect.io import read_photo, write_photo

    photo = read_photo(path)
    key = jax.random.fold_in(jax.random.key(args.seed), index)
    bars = []

    def progress(i):  # the bar opens at the first finished step, so a photo without a face shows none
        if not bars and progress_factory:
            bars.append(progress_factory(path))
        for b in bars:
            b.update(1)

    try:
        result = protector.protect(photo, key, progress=progress, path=path)
    finally:
        for b in bars:
            b.close()
    stem = _unique_stem(path, used)
    protected = out_dir / f"{stem}.protected.{args.output_format}"
    pair = out_dir / f"{stem}.side_by_side.png"
    report_path = out_dir / f"{stem}.report.json"
    write_photo(protected, result.image, inputs=[path])
    write_photo(pair, side_by_side(photo, result.image), inputs=[path])
    outputs = {"protected": os.fspath(protected), "side_by_side": os.fspath(pair), "report": os.fspath(report_path)}
    report = report_dict(path, args, protector, result, outputs)
    write_json(report_path, report)
    return report


def _summary_line(path, report) -> str:
    sims = "; ".join(
        ", ".join(f"{k} {v:.3f}" for k, v in f["similarity_to_original"].items()) for f in report["faces"]
    )
    q = report["photo_quality"]
    return (f"{path}: {len(report['faces'])} face(s) protected in {report['seconds']:.1f}s; surrogate cos to "
            f"original {sims}; PSNR {q['psnr']:.2f} dB, SSIM {q['ssim']:.4f} -> {report['outputs']['protected']}")


def run(args) -> int:
    from tqdm import tqdm

    from jaxprotect.io import run_batch
    from jaxprotect.registry import load_network

    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    detector = load_network("mtcnn")
    protector = build_protector(args, detector)
    used: set = set()
    steps = protector.config.steps

    def bar(path):
        return tqdm(total=steps, desc=Path(path).name, unit="step", file=sys.stderr, leave=False)

    def one(path):
        index = args.photos.index(path) if path in args.photos else 0
        report = protect_one(path, index, args, protector, out_dir, used, bar)
        print(_summary_line(path, report), flush=True)
        return report

    report = run_batch(args.photos, one)
    return report.exit_code
