"""``jaxprotect cloak learn|apply``: FaceCloak, a personal cloak learnt once and added to any photo.

``jaxprotect cloak learn PHOTO [--synthetic DIR | --real PHOTOS... | --augment N | --no-synthetic]
-o NAME.cloak.npz`` learns the cloak of the person in PHOTO (largest face) and writes the cloak
file: the mask, the stickers, the high-pass part, the probe's high-pass filter and sticker boxes,
and the settings (JSON), read back with ``allow_pickle=False``.

``jaxprotect cloak apply NAME.cloak.npz INPUTS... -o OUT/`` adds it to each photo's largest face
(no optimisation per photo) as a job (:mod:`jaxprotect.jobs`) and writes what every method writes:
``<stem>.facecloak.png`` (no metadata), ``<stem>.facecloak.side_by_side.png`` (original | cloaked)
and ``<stem>.facecloak.json``, plus the job's ``job.json`` and ``summary.json/.md``. A photo that
cannot be read or shows no face gets a message and nothing written; the others go on and the exit
status is 1 at the end.

This module only parses arguments; the method is :mod:`jaxprotect.methods.facecloak.run`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_SURROGATES = "mobilefacenet_foamliu"


def _learn_arguments(p):
    p.add_argument("photo", help="a photo of the person (the largest face is used); never modified")
    p.add_argument("-o", "--output", required=True, help="the cloak file to write (NAME.cloak.npz)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--synthetic", metavar="DIR", default=None,
                     help="a folder of generated images of the person (e.g. Arc2Face outputs made elsewhere)")
    src.add_argument("--real", metavar="PHOTO", nargs="+", default=None,
                     help="other real photos of the same person (the code's use_real; at most 8 used)")
    src.add_argument("--augment", metavar="N", type=int, default=None,
                     help="N images made from PHOTO by seeded pose/light/colour/blur/JPEG transforms (default: 8)")
    src.add_argument("--no-synthetic", action="store_true", help="learn on PHOTO alone")
    p.add_argument("--mode", choices=("faithful", "corrected"), default="faithful",
                   help="faithful: the released code, its x255 scale bug included; corrected: applies what "
                        "was optimised, stickers and high-pass inside the loss, per-user far anchor")
    p.add_argument("--surrogates", default=DEFAULT_SURROGATES,
                   help="comma-separated recognisers to learn against: registry names, or NAME=CHECKPOINT "
                        "(e.g. ir50=models/arcface.pth for FaceCloak's ArcFace); default: the shipped "
                        "mobilefacenet_foamliu")
    p.add_argument("--epochs", type=int, default=10, help="passes over the image set (10)")
    p.add_argument("--eps", type=float, default=8.0, help="mask budget in grey levels of 255 (8)")
    p.add_argument("--step", type=float, default=2.0, help="sign-step size in grey levels (2)")
    p.add_argument("--sticker-levels", type=float, default=32.0, help="sticker budget in grey levels (32)")
    p.add_argument("--highpass-levels", type=float, default=32.0, help="high-pass part budget in grey levels (32)")
    p.add_argument("--no-stickers", action="store_true", help="leave the region stickers out")
    p.add_argument("--no-highpass", action="store_true", help="leave the high-pass part out")
    p.add_argument("--loss", choices=("triplet", "fawkes", "untarget"), default="triplet")
    p.add_argument("--gallery", metavar="DIR", default=None,
                   help="photos of other people for the far anchor (default: 100 faces of scikit-image's LFW "
                        "subset, no download)")
    p.add_argument("--far-anchor", choices=("fixed", "farthest"), default=None,
                   help="far anchor rule (default: fixed in faithful mode, farthest in corrected mode)")
    p.add_argument("--fixed-far", type=int, default=0, help="gallery index of the fixed far anchor (0)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (recorded in the cloak)")


def _apply_arguments(p):
    p.add_argument("cloak", help="a cloak file written by `jaxprotect cloak learn`")
    p.add_argument("photos", nargs="+", help="photos of the same person; never modified")
    p.add_argument("-o", "--output-dir", required=True, help="folder for the cloaked photos and reports")
    p.add_argument("--output-format", choices=("png", "webp", "jpg"), default="png",
                   help="cloaked photo format (png, lossless; jpg at quality 95 weakens the cloak)")
    p.add_argument("--resized", action="store_true",
                   help="write the code's own output: the photo resized anisotropically so the face is 112 px")
    p.add_argument("--surrogates", default=None,
                   help="recognisers for the report's similarities (default: the cloak's own, when shipped)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_arguments(parser):
    sub = parser.add_subparsers(dest="cloak_command", required=True, metavar="ACTION")
    _learn_arguments(sub.add_parser("learn", help="learn a person's cloak from one photo",
                                    description="learn a person's cloak from one photo"))
    _apply_arguments(sub.add_parser("apply", help="add a learnt cloak to photos of that person",
                                    description="add a learnt cloak to photos of that person"))


def parse_surrogates(spec: str):
    """``(surrogates, params)`` for ``"name,name=checkpoint,..."`` (registry names, optional checkpoints)."""
    from jaxprotect.methods.facecloak.runners import load_recognisers

    entries = [e.strip() for e in spec.split(",") if e.strip()]
    if not entries:
        raise SystemExit("error: --surrogates is empty")
    try:
        return load_recognisers(entries)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: --surrogates {spec!r}: {error}") from None


def _config(args):
    from jaxprotect.methods.facecloak.config import FaceCloakConfig

    try:
        return FaceCloakConfig(mode=args.mode, epochs=args.epochs, eps_levels=args.eps, step_levels=args.step,
                               sticker_levels=args.sticker_levels, highpass_levels=args.highpass_levels,
                               loss=args.loss, stickers=not args.no_stickers, highpass=not args.no_highpass,
                               far_anchor=args.far_anchor)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


def _synthetic(args, photo, detector):
    import jax

    from jaxprotect.methods.facecloak import synthetic

    try:
        if args.synthetic:
            return synthetic.from_folder(args.synthetic)
        if args.real:
            return synthetic.from_photos(args.real)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if args.no_synthetic:
        return synthetic.empty()
    n = 8 if args.augment is None else args.augment
    if n < 0:
        raise SystemExit("error: --augment must be >= 0")
    key = jax.random.fold_in(jax.random.key(args.seed), 1)
    return synthetic.augment(photo, n, key, detector, seed=args.seed)


def _gallery(args, surrogates, params, detector, size):
    from jaxprotect.io import run_batch
    from jaxprotect.io.photos import read_photo
    from jaxprotect.methods.facecloak.preprocess import preprocess_photo
    from jaxprotect.methods.facecloak.run import embed_gallery

    if args.gallery is None:
        return None
    folder = Path(args.gallery)
    if not folder.is_dir():
        raise SystemExit(f"error: --gallery {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    report = run_batch(files, lambda p: preprocess_photo(read_photo(p), detector, size).crop, quiet=True)
    for item in report.failed:
        print(f"skipping gallery photo {item.path}: {item.error}", file=sys.stderr)
    if not report.succeeded:
        raise SystemExit(f"error: no usable photo in {folder}")
    import numpy as np

    crops = np.stack([i.value for i in report.succeeded])
    return embed_gallery(surrogates, params, crops, [Path(i.path).name for i in report.succeeded], os.fspath(folder))


def run_learn(args) -> int:
    import jax

    from jaxprotect.io import PhotoError, read_photo
    from jaxprotect.methods.facecloak.run import learn_cloak, save_cloak
    from jaxprotect.registry import load_network

    out = Path(args.output)
    if out.is_dir():
        raise SystemExit(f"error: -o {out} is a folder; give a file name such as me.cloak.npz")
    config = _config(args)
    inputs = [args.photo] + list(args.real or [])
    if any(os.path.realpath(p) == os.path.realpath(out) for p in inputs):  # fail before the work, not after
        print(f"FAILED {out}: [OutputIsInputError] refusing to write the cloak over an input photo", file=sys.stderr)
        return 1
    detector = load_network("mtcnn")
    try:
        photo = read_photo(args.photo)
    except PhotoError as e:
        print(f"FAILED {args.photo}: [{type(e).__name__}] {e.reason}", file=sys.stderr)
        return 1
    surrogates, params = parse_surrogates(args.surrogates)
    synthetic = _synthetic(args, photo, detector)
    gallery = _gallery(args, surrogates, params, detector, config.crop_size)
    key = jax.random.fold_in(jax.random.key(args.seed), 0)
    try:
        cloak = learn_cloak(photo, synthetic, surrogates, params, detector, config, key, gallery,
                            fixed_far=args.fixed_far, path=args.photo, seed=args.seed)
    except PhotoError as e:
        print(f"FAILED {args.photo}: [{type(e).__name__}] {e.reason}", file=sys.stderr)
        return 1
    try:
        save_cloak(out, cloak, inputs=inputs)
    except PhotoError as e:
        print(f"FAILED {out}: [{type(e).__name__}] {e.reason}", file=sys.stderr)
        return 1
    losses = cloak.meta["losses"]
    print(f"{args.photo}: cloak learnt ({config.mode}, {', '.join(cloak.meta['surrogates'])}; synthetic set "
          f"{cloak.meta['synthetic']}; far anchor {cloak.meta['anchors']['far']}); loss {losses[0]:.3f} -> "
          f"{losses[-1]:.3f} in {sum(cloak.meta['seconds'][k] for k in ('prepare', 'optimise')):.1f}s -> {out}",
          flush=True)
    return 0


def _report_recognisers(args, cloak):
    """The recognisers whose similarities the reports give: --surrogates, else the cloak's own when they
    need no checkpoint."""
    from jaxprotect.methods.facecloak.runners import load_recognisers

    if args.surrogates:
        return parse_surrogates(args.surrogates)
    try:
        return load_recognisers(cloak.meta.get("surrogates", []))
    except (ValueError, FileNotFoundError):
        return (), ()  # a surrogate that needs a checkpoint: no similarities unless --surrogates names it


def run_apply(args) -> int:
    from jaxprotect.methods.driver import run_protection
    from jaxprotect.methods.facecloak.run import load_cloak
    from jaxprotect.methods.facecloak.runners import CloakApplyRunner
    from jaxprotect.registry import load_network

    try:
        cloak = load_cloak(args.cloak)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    recognisers, params = _report_recognisers(args, cloak)
    runner = CloakApplyRunner(cloak, args.cloak, load_network("mtcnn"), recognisers, params,
                              output="resized" if args.resized else "original")
    try:
        result = run_protection(args.photos, runner, args.output_dir, image_format=args.output_format,
                                show_progress=not args.no_progress)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return result.exit_code


def run(args) -> int:
    """``cloak learn`` or ``cloak apply``; returns the exit status."""
    if args.cloak_command == "learn":
        return run_learn(args)
    return run_apply(args)
