"""``jaxprotect faces PHOTO...``: detect faces (MTCNN); print boxes and scores."""
from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("photos", nargs="+", help="input photos (JPEG, PNG, WebP); never modified")
    parser.add_argument("--crops-dir", default=None, help="write aligned face crops into this folder")
    parser.add_argument("--align", choices=("112", "160", "box"), default="112", help="crop kind for --crops-dir")
    parser.add_argument("--json", action="store_true", help="print one JSON object per photo (with landmarks)")


def run(args) -> int:
    print("jaxprotect faces: detection is being built; no photo was processed")
    return 1
