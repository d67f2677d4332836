"""``jaxprotect protect --method M PHOTOS... -o OUT/``: protect the faces in whole photos.

The pixel-space methods (TIP-IM and the noise baselines) live in ``protect_pixel``; CLIP2Protect
in ``protect_clip2protect``. Each adds its own option group and runs the batch; this module only
holds what they share and dispatches.
"""
from __future__ import annotations

import importlib

PIXEL_METHODS = ("tipim", "pgd", "mifgsm", "tidim")
METHODS = ("clip2protect",) + PIXEL_METHODS
_FAMILIES = ("jaxprotect.commands.protect_pixel", "jaxprotect.commands.protect_clip2protect")


def add_arguments(parser):
    parser.add_argument("photos", nargs="+", help="input photos (JPEG, PNG, WebP); never modified")
    parser.add_argument("-o", "--output-dir", required=True, help="folder for protected photos and reports")
    parser.add_argument("--method", choices=METHODS, required=True)
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (recorded in the report)")
    for family in _FAMILIES:
        importlib.import_module(family).add_arguments(parser)


def run(args) -> int:
    family = _FAMILIES[1] if args.method == "clip2protect" else _FAMILIES[0]
    return importlib.import_module(family).run(args)
