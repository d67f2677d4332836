"""Pixel-space protection (TIP-IM, PGD, MI-FGSM, TI-DIM) for ``jaxprotect protect``."""
from __future__ import annotations


def add_arguments(parser):
    parser.add_argument_group("pixel methods (tipim, pgd, mifgsm, tidim)")


def run(args) -> int:
    print("jaxprotect protect: the pixel methods are being built; no photo was processed")
    return 1
