"""``jaxprotect faces PHOTO... [--crops-dir DIR] [--align 112|160|box] [--json]``: find faces (MTCNN).

Prints each photo's faces (box ``x1,y1,x2,y2`` in pixels and probability; with ``--json`` one
JSON object per photo per line, landmarks included) and, with ``--crops-dir``, writes one PNG
crop per face: ArcFace-aligned 112x112 or 160x160, or CLIP2Protect's MTCNN-box crop. A photo
that cannot be read or holds no face is reported and the others still run; the exit status is
1 if any photo failed. Inputs are never written to.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def add_arguments(parser):
    parser.add_argument("photos", nargs="+", help="input photos (JPEG, PNG, WebP); never modified")
    parser.add_argument("--crops-dir", default=None, help="write one PNG crop per face into this folder")
    parser.add_argument("--align", choices=("112", "160", "box"), default="112",
                        help="crop kind: 5-point ArcFace alignment at 112 or 160 px, or the MTCNN box (default 112)")
    parser.add_argument("--margin", type=int, default=0, help="pixels added around the box for --align box (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per photo (with landmarks)")


def _crop_names(photos: list[str]) -> dict[str, str]:
    """A crop-file stem per input; inputs sharing a file stem get their position appended."""
    stems = Counter(Path(p).stem for p in photos)
    return {p: Path(p).stem if stems[Path(p).stem] == 1 else f"{Path(p).stem}_{k}" for k, p in enumerate(photos)}


def _crop(photo, detections, i, kind, margin):
    from jaxprotect.detect.align import align_face, box_crop

    if kind == "box":
        return box_crop(photo, detections.boxes[i], margin=margin).image
    return align_face(photo, detections.landmarks[i], size=int(kind)).image


def run(args) -> int:
    from jaxprotect.io import NoFaceError, read_photo, run_batch, write_photo
    from jaxprotect.registry import load_network

    try:
        detector = load_network("mtcnn")
    except (OSError, KeyError, ValueError) as e:  # missing or damaged shipped weights
        print(f"error: cannot load the MTCNN detector: {e}", file=sys.stderr)
        return 2
    names = _crop_names(args.photos)
    crops_dir = Path(args.crops_dir) if args.crops_dir else None

    def one(path: str):
        photo = read_photo(path)
        found = detector.detect(photo)
        if len(found.boxes) == 0:
            raise NoFaceError(path, "no face found (MTCNN, thresholds 0.6/0.7/0.7, smallest face 20 px)")
        written = []
        if crops_dir is not None:
            for i in range(len(found.boxes)):
                out = crops_dir / f"{names[path]}_face{i}_{args.align}.png"
                crop = _crop(photo, found, i, args.align, args.margin)
                written.append(str(write_photo(out, crop, inputs=args.photos)))
        _print(path, photo.shape, found, written, args.json)
        return written

    report = run_batch(args.photos, one)
    if args.json:
        for item in report.failed:
            print(json.dumps({"path": item.path, "error_type": item.error_type, "error": item.error}), flush=True)
    return report.exit_code


def _print(path, shape, found, written, as_json):
    if as_json:
        faces = [
            {"box": [round(float(v), 3) for v in b], "prob": float(p),
             "landmarks": [[round(float(v), 3) for v in xy] for xy in lm]}
            for b, p, lm in zip(found.boxes, found.probs, found.landmarks)
        ]
        record = {"path": path, "width": shape[1], "height": shape[0], "faces": faces}
        if written:
            record["crops"] = written
        print(json.dumps(record), flush=True)
        return
    print(f"{path}: {len(found.boxes)} face(s) in {shape[1]}x{shape[0]}")
    for i, (b, p) in enumerate(zip(found.boxes, found.probs)):
        crop = f" -> {written[i]}" if written else ""
        print(f"  face {i}: box {b[0]:.1f},{b[1]:.1f},{b[2]:.1f},{b[3]:.1f} prob {p:.5f}{crop}")
    sys.stdout.flush()
