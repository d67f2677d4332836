"""``jaxprotect demo``: protect the embedded astronaut photo and judge it with an unseen recogniser."""
from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("-o", "--output-dir", default="jaxprotect-demo", help="folder for the demo's outputs")


def run(args) -> int:
    print("jaxprotect demo: being built; nothing was run")
    return 1
