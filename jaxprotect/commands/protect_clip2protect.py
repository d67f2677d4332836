"""``jaxprotect protect --method clip2protect``: CLIP2Protect (text-guided adversarial makeup).

Options live in their own argument group (flags another method family already registered, such
as ``--target``, ``--steps`` and ``--dodge``, are shared, not added twice); :func:`run` loads the eight networks, aligns and
batches the photos and writes, per photo, ``<stem>_clip2protect.png`` (the whole protected
photo; ``--output-format`` when given), ``<stem>_clip2protect_side_by_side.png`` (aligned input | protected) and
``<stem>_clip2protect.json`` (loss curves, similarities, the victim's verdict, settings, seed).
Heavy imports happen inside :func:`run`.
"""
from __future__ import annotations

import os

# network kind -> what to pass in the config file / convert, and the upstream file users bring
CHECKPOINT_KINDS = ("stylegan2", "e4e", "lpips_vgg", "clip", "ir152", "irse50", "facenet", "mobileface")
_UPSTREAM_FILE = {
    "stylegan2": "stylegan2-ffhq-config-f.pt",
    "e4e": "e4e_ffhq_encode.pt",
    "lpips_vgg": "vgg16-397923af.pth",
    "clip": "ViT-B-32.pt",
    "ir152": "ir152.pth",
    "irse50": "irse50.pth",
    "facenet": "facenet.pth",
    "mobileface": "mobile_face.pth",
}
CACHE_SUFFIXES = (".npz", ".safetensors")


def _add(group, parser, *flags, **kw):
    """Add an option unless another method family already registered the same flag (then shared)."""
    if any(f in parser._option_string_actions for f in flags):
        return
    group.add_argument(*flags, **kw)


def add_arguments(parser):
    """The ``clip2protect`` option group of ``jaxprotect protect``."""
    g = parser.add_argument_group("clip2protect (--method clip2protect)")
    a = lambda *f, **kw: _add(g, parser, *f, **kw)  # noqa: E731
    a("--prompt", default="red lipstick", help="makeup text (upstream --makeup_prompt; default: red lipstick)")
    a("--source-text", default="face", help="CLIP source text (default: face)")
    a("--target", help="photo of the identity to impersonate (its face is cropped with MTCNN)")
    a("--target-box", help="x1,y1,x2,y2 face box of --target instead of MTCNN (e.g. 244,187,764,891 for 085807.jpg)")
    a("--target-eval", help="another photo of the target identity, used only to judge success (default: --target)")
    a("--target-eval-box", help="x1,y1,x2,y2 face box of --target-eval instead of MTCNN")
    a("--victim", choices=("mobileface", "facenet", "irse50", "ir152"), default="mobileface",
      help="held-out recogniser that judges success; the other three are attacked (default: mobileface)")
    a("--dodge", action="store_true", help="upstream impersonate=False: also push away from the photo's own identity")
    a("--steps", type=int, default=None, help="adversarial search steps (clip2protect default: 50)")
    a("--lr", type=float, default=0.01, help="Adam learning rate of the search (default: 0.01)")
    a("--finetune-steps", type=int, default=150, help="generator fine-tuning steps per photo (default: 150)")
    a("--finetune-lr", type=float, default=5e-4, help="Adam learning rate of the fine-tuning (default: 5e-4)")
    a("--skip-finetune", action="store_true", help="search on the pretrained generator (no stage 1)")
    a("--sequential-generator", action="store_true",
      help="upstream quirk: one generator and Adam state carried across the photos in order")
    a("--lambda-lat", type=float, default=0.01, help="weight of sum((w - w0)^2) (default: 0.01)")
    a("--lambda-adv", type=float, default=0.7, help="weight of the adversarial term (default: 0.7)")
    a("--lambda-clip", type=float, default=0.3, help="weight of the CLIP InfoNCE term (default: 0.3)")
    a("--margin", type=int, default=0, help="pixels around the MTCNN box for the recognisers (default: 0)")
    a("--num-aug", type=int, default=1, help="RandomPerspective copies per step (default: 1)")
    a("--no-augment", action="store_true", help="no RandomPerspective before CLIP")
    a("--no-noise-optimize", action="store_true", help="keep every noise map fixed")
    a("--final-image", choices=("pre_update", "post_update"), default="pre_update",
      help="pre_update (upstream): the last step's image before its update; post_update: after all updates")
    a("--clip-preprocess", choices=("faithful", "correct"), default="faithful",
      help="faithful (upstream): CLIP sees (x+1)/2 of a [0,1] image; correct: without that")
    a("--align", choices=("auto", "always", "never"), default="auto",
      help="FFHQ-align photos that are not already generator-sized (default: auto)")
    a("--batch-size", type=int, default=4, help="photos per batch (default: 4)")
    a("--checkpoints", help="TOML/JSON file: kind = path for " + ", ".join(CHECKPOINT_KINDS))
    a("--weights-dir", help="folder of `jaxprotect convert` caches named <kind>.npz or <kind>.safetensors "
                            "(default: $JAXPROTECT_WEIGHTS or ~/.cache/jaxprotect)")
    a("--no-progress", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------------------------------
# checkpoints


def _read_config(path: str) -> dict:
    import json
    import tomllib

    with open(path, "rb") as f:
        data = json.load(f) if path.endswith(".json") else tomllib.load(f)
    section = data.get("checkpoints", data)
    unknown = sorted(set(section) - set(CHECKPOINT_KINDS))
    if unknown:
        raise ValueError(f"{path}: unknown checkpoint kinds {unknown}; known: {', '.join(CHECKPOINT_KINDS)}")
    base = os.path.dirname(os.path.abspath(path))
    return {k: os.path.join(base, os.path.expanduser(v)) for k, v in section.items()}


def _manifest_sources() -> dict:
    """{kind: (upstream file, where users get it)} from ported_weights/manifest.toml when present."""
    out = {}
    try:
        import tomllib

        from ported_weights import DIRECTORY

        with open(DIRECTORY / "manifest.toml", "rb") as f:
            entries = tomllib.load(f).get("checkpoint", [])
    except (OSError, ImportError, ValueError):
        return out
    for e in entries:
        if e.get("name") == _UPSTREAM_FILE.get(e.get("kind")):
            out[e["kind"]] = (e["name"], e.get("source", ""))
    return out


def weights_dir(args) -> str:
    """Where `jaxprotect convert` caches are looked up."""
    return os.path.expanduser(args.weights_dir or os.environ.get("JAXPROTECT_WEIGHTS") or "~/.cache/jaxprotect")


def resolve_checkpoints(args) -> tuple[dict, list[str]]:
    """({kind: path}, [message per missing checkpoint]) from --checkpoints, then --weights-dir."""
    given = _read_config(args.checkpoints) if args.checkpoints else {}
    folder = weights_dir(args)
    found, missing = {}, []
    sources = _manifest_sources()
    for kind in CHECKPOINT_KINDS:
        candidates = [given[kind]] if kind in given else [os.path.join(folder, kind + s) for s in CACHE_SUFFIXES]
        path = next((p for p in candidates if os.path.isfile(p)), None)
        if path is not None:
            found[kind] = path
            continue
        name, source = sources.get(kind, (_UPSTREAM_FILE[kind], "see ported_weights/manifest.toml"))
        where = f"{given[kind]} (from {args.checkpoints}) does not exist" if kind in given else \
            f"no {kind}.npz or {kind}.safetensors in {folder}"
        missing.append(
            f"  {kind}: {where}. Upstream file {name}: {source}. Convert it once with "
            f"`jaxprotect convert {kind} {name} {os.path.join(folder, kind + '.npz')}` "
            f"or give its path as `{kind} = \"...\"` in a --checkpoints file."
        )
    return found, missing


# ---------------------------------------------------------------------------------------------
# run


def _config(args):
    from jaxprotect.methods.clip2protect.config import Clip2ProtectConfig

    return Clip2ProtectConfig(
        finetune_steps=args.finetune_steps, finetune_lr=args.finetune_lr, skip_finetune=args.skip_finetune,
        sequential_generator=args.sequential_generator, steps=50 if args.steps is None else args.steps, lr=args.lr,
        noise_optimize=not args.no_noise_optimize, lambda_lat=args.lambda_lat, lambda_adv=args.lambda_adv,
        lambda_clip=args.lambda_clip, source_text=args.source_text, prompt=args.prompt, victim=args.victim,
        impersonate=not args.dodge, augment=not args.no_augment, num_aug=args.num_aug,
        clip_preprocess=args.clip_preprocess, margin=args.margin, final_image=args.final_image,
    )


def _box(text):
    if text is None:
        return None
    values = [float(v) for v in text.split(",")]
    if len(values) != 4:
        raise ValueError(f"a box is x1,y1,x2,y2, got {text!r}")
    return tuple(values)


def photo_id(path: str) -> int:
    """The photo's key index: crc32 of its file name, so a photo's randomness does not depend on
    which other photos are in the batch or their order."""
    import zlib

    return zlib.crc32(os.path.basename(path).encode()) & 0x7FFFFFFF


def run(args) -> int:
    """Protect ``args.photos``; returns 0 when every photo succeeded, 1 if some failed, 2 on setup errors."""
    if args.target is None:
        print("error: --method clip2protect needs --target TARGET.jpg (the identity to impersonate; "
              "upstream's default target is AMT-GAN's 085807.jpg)")
        return 2
    try:
        cfg = _config(args)
        target_box, eval_box = _box(args.target_box), _box(args.target_eval_box)
    except ValueError as e:
        print(f"error: {e}")
        return 2
    found, missing = resolve_checkpoints(args)
    if missing:
        print("error: CLIP2Protect needs these checkpoints, which were not found:\n" + "\n".join(missing))
        return 2
    from jaxprotect.commands._clip2protect_run import protect_photos

    return protect_photos(args, cfg, found, target_box, eval_box)
