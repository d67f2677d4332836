"""The ``jaxprotect`` command: ``faces``, ``protect``, ``cloak``, ``demo``, ``convert`` and ``evaluate``.

Each subcommand lives in ``jaxprotect/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status); heavy imports happen inside ``run``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "demo": "protect scikit-image's astronaut photo with the default method and judge it with recognisers it never attacked",
    "faces": "detect faces (MTCNN) in photos; print boxes and scores, optionally write aligned crops",
    "protect": "protect the faces in photos (fullres by default; tipim, pgd, mifgsm, tidim, facecloak, clip2protect)",
    "cloak": "FaceCloak: learn a person's cloak from one photo, then add it to any photo of them",
    "convert": "convert an original PyTorch checkpoint into a jaxprotect params cache (.npz/.safetensors)",
    "evaluate": "evaluate protected photos against their originals: PSR (verification, identification), "
                "quality, robustness",
}


def build_parser() -> argparse.ArgumentParser:
    from jaxprotect import __version__

    parser = argparse.ArgumentParser(prog="jaxprotect", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"jaxprotect {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(f"jaxprotect.commands.{name}")
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``jaxprotect`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    from jaxprotect.runtime import configure_cpu_dispatch

    configure_cpu_dispatch()
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
