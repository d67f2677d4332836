"""``jaxprotect evaluate PROTECTED_DIR --originals DIR [--targets DIR] [--gallery DIR] -o REPORT_DIR``.

Parses the options into :class:`jaxprotect.eval.EvaluateConfig` and runs
:class:`jaxprotect.eval.Evaluator`; every protocol lives in :mod:`jaxprotect.eval`. Exit status 0
when a report was written, 2 for bad arguments (missing folder, nothing paired).
"""
from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(parser):
    from jaxprotect.eval.robustness import DEFAULT_TRANSFORMS, TRANSFORMS

    parser.add_argument("protected_dir", help="folder of protected photos (any tool's output)")
    parser.add_argument("--originals", required=True,
                        help="folder of the unprotected originals (also the calibration set), or a built dataset's "
                             "name (e.g. identity_folder, lfw/images) with --data-dir")
    parser.add_argument("--targets", default=None, help="folder of impersonation targets (one photo: the target of every photo)")
    parser.add_argument("--gallery", default=None,
                        help="identification gallery: photos named <identity>_<n> (or see --identities), or a built "
                             "dataset's name with --data-dir")
    parser.add_argument("--data-dir", default=None, help="where the datasets named by --originals/--gallery were built")
    parser.add_argument("-o", "--output-dir", required=True, help="where report.md, report.json and the plots go")
    parser.add_argument("--mapping", default=None,
                        help="CSV (header protected,original[,target]) or JSON pairing file; its rows override the name rule")
    parser.add_argument("--identities", default=None, help="CSV (header file,identity) or JSON {file: identity} for unprotected photos")
    parser.add_argument("--judges", default="auto",
                        help="comma-separated real judges: auto (every installed one), dlib, facenet_casia, "
                             "facenet_casia_jax, none (default auto)")
    parser.add_argument("--recogniser", action="append", default=[], metavar="NAME[=CHECKPOINT]",
                        help="also judge with a jaxprotect recogniser (repeatable), e.g. irse50=models/irse50.pth; "
                             "ir152/irse50/facenet/mobileface also get AMT-GAN's fixed thresholds")
    parser.add_argument("--far", default="0.1,0.01,0.001", help="false-accept rates of the thresholds (default 0.1,0.01,0.001)")
    parser.add_argument("--headline-far", type=float, default=0.01, help="FAR of the summary and robustness tables (default 0.01)")
    parser.add_argument("--ranks", default="1,5", help="identification ranks (default 1,5)")
    parser.add_argument("--robustness", default=",".join(DEFAULT_TRANSFORMS),
                        help=f"transforms ({', '.join(TRANSFORMS)}) or 'none' (default: all)")
    parser.add_argument("--no-robustness-control", action="store_true",
                        help="do not also transform the originals (the control row)")
    parser.add_argument("--lpips", choices=("alex", "vgg", "none"), default="alex", help="LPIPS trunk for the face crop (default alex)")
    parser.add_argument("--inception-fid", default=None, metavar="PTH",
                        help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or its cache) for a real FID")
    parser.add_argument("--seed", type=int, default=0, help="seed of KID's subset draws")
    parser.add_argument("--no-plots", action="store_true", help="do not draw PNG plots")


def _csv(text, cast=str):
    return tuple(cast(v.strip()) for v in text.split(",") if v.strip())


def _recognisers(items):
    out = []
    for item in items:
        name, _, checkpoint = item.partition("=")
        out.append((name.strip(), checkpoint.strip() or None))
    return tuple(out)


def _datasets(args) -> None:
    """Replace dataset names in --originals/--gallery by folders of their photos under the report folder."""
    from jaxprotect.eval.dataset_inputs import is_dataset, materialise

    for attr in ("originals", "gallery"):
        name = getattr(args, attr)
        if name is None or not is_dataset(name):
            continue
        if args.data_dir is None:
            raise ValueError(f"--{attr} {name} is a dataset: give --data-dir where it was built")
        folder, identities = materialise(name, args.data_dir, Path(args.output_dir) / f"{attr}.{name.replace('/', '_')}")
        setattr(args, attr, str(folder))
        if identities is not None and args.identities is None:
            args.identities = str(identities)


def run(args) -> int:
    from jaxprotect.datasets import DatasetError
    from jaxprotect.eval import EvaluateConfig, Evaluator

    try:
        _datasets(args)
    except (ValueError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for flag, folder in (("PROTECTED_DIR", args.protected_dir), ("--originals", args.originals),
                         ("--targets", args.targets), ("--gallery", args.gallery)):
        if folder is not None and not Path(folder).is_dir():
            print(f"error: {flag} {folder} is not a folder", file=sys.stderr)
            return 2
    if Path(args.output_dir).resolve() in {Path(f).resolve() for f in (args.protected_dir, args.originals, args.targets,
                                                                      args.gallery) if f is not None}:
        print("error: the report folder must differ from the photo folders", file=sys.stderr)
        return 2
    try:
        config = EvaluateConfig(
            originals_dir=args.originals, targets_dir=args.targets, gallery_dir=args.gallery, mapping=args.mapping,
            identities=args.identities, judges=_csv(args.judges), recognisers=_recognisers(args.recogniser),
            fars=_csv(args.far, float), headline_far=args.headline_far, ranks=_csv(args.ranks, int),
            robustness=() if args.robustness.strip() == "none" else _csv(args.robustness),
            robustness_control=not args.no_robustness_control, lpips=None if args.lpips == "none" else args.lpips,
            inception_fid=args.inception_fid, seed=args.seed, plots=not args.no_plots)
        evaluator = Evaluator(config)
        report = evaluator.evaluate(args.protected_dir, args.output_dir)
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if report["pairing"]["pairs"] == 0:
        print(f"error: no protected photo of {args.protected_dir} could be paired with an original "
              f"(see {Path(args.output_dir) / 'report.md'})", file=sys.stderr)
        return 2
    _print_summary(report, args.output_dir)
    return 0


def _print_summary(report, output_dir):
    s = report["summary"]
    print(f"{s['pairs']} pairs ({s['unmatched']} unmatched); face SSIM {s['face_ssim_mean']}, "
          f"face LPIPS {s['face_lpips_mean']}")
    for name, row in s["dodging"].items():
        print(f"{name}: dodging PSR at FAR {s['headline_far']}: own original {row['own_original']}, "
              f"other photos {row['other_photos']} (threshold {row['threshold']})")
    print(f"report: {Path(output_dir) / 'report.md'}")
