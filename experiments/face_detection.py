"""Faces found: MTCNN at facenet-pytorch's defaults vs jaxprotect's two-pass candidate search (issue 15).

On every deepface photo (65 photos incl. the 7-face selfie and the couple) and the FFHQ sample:
the faces MTCNN finds at its defaults (thresholds 0.6/0.7/0.7, one pass), and the candidates
:func:`jaxprotect.detect.find_faces.find_faces` finds (thresholds 0.6/0.6/0.7, plus a pass on the
photo padded by 15% of its longer side with its mean colour), split by probability: >= 0.9 (protected
by default) and 0.7-0.9 (reported and warned about, not protected). On the selfie every box is listed.

Run: python experiments/face_detection.py   -> experiments/results/face_detection.{md,json}
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
SHARED = Path(os.environ.get("JAXPROTECT_SHARED", HERE.parent.parent / "shared"))
FACES = SHARED / "assets" / "faces"


def main() -> int:
    from jaxprotect.detect.find_faces import FaceSearch, find_faces
    from jaxprotect.face_conventions import select_faces
    from jaxprotect.io import read_photo
    from jaxprotect.registry import load_network

    detector = load_network("mtcnn")
    search = FaceSearch()
    files = sorted((FACES / "deepface").glob("*.jpg")) + [FACES / "ffhq_sample" / "input_img.jpg"]
    rows = []
    t0 = time.perf_counter()
    for f in files:
        photo = read_photo(f)
        default = detector.detect(photo)
        found = find_faces(detector, photo, search)
        sel = select_faces(found, "all", min_prob=0.9, min_size=20, warn_below=0.7)
        rows.append({"photo": f.name, "size": list(photo.shape[:2]), "default": len(default.boxes),
                     "default_probs": [round(float(p), 4) for p in default.probs],
                     "protected": len(sel.indices), "warned": len(sel.warnings),
                     "candidates": [[round(float(v), 1) for v in b] + [round(float(p), 4)]
                                    for b, p in zip(found.boxes, found.probs)]})
        print(f.name, rows[-1]["default"], rows[-1]["protected"], rows[-1]["warned"], flush=True)
    meta = {"search": search.__dict__, "min_prob": 0.9, "warn_below": 0.7, "min_size": 20,
            "seconds": time.perf_counter() - t0, "loadavg": os.getloadavg()}
    out = HERE / "results" / "face_detection"
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = ["# Faces found: MTCNN defaults vs the two-pass candidate search", "",
             f"{len(rows)} photos (deepface + FFHQ sample). Search: thresholds {search.candidate_thresholds}, "
             f"padded pass {search.pad:.0%} of the longer side (mean colour), boxes at least {search.min_inside:.0%} "
             f"inside the photo, NMS IoU {search.nms_iou}. Protected by default: probability >= 0.9 and a box side "
             ">= 20 px; warned: 0.7-0.9.", "",
             "| | faces |", "| --- | --- |",
             f"| MTCNN defaults (one pass, 0.6/0.7/0.7) | {sum(r['default'] for r in rows)} |",
             f"| candidates >= 0.9 (protected) | {sum(r['protected'] for r in rows)} |",
             f"| candidates 0.7-0.9 (warned, not protected) | {sum(r['warned'] for r in rows)} |", "",
             "Photos where the counts differ:", "", "| photo | defaults | protected | warned | candidate probabilities |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        if r["default"] != r["protected"] or r["warned"]:
            probs = ", ".join(f"{c[4]:.3f}" for c in r["candidates"])
            lines.append(f"| {r['photo']} | {r['default']} | {r['protected']} | {r['warned']} | {probs} |")
    selfie = next(r for r in rows if r["photo"] == "selfie-many-people.jpg")
    lines += ["", "Selfie (7 visible faces), every candidate (x1, y1, x2, y2, probability):", ""]
    lines += [f"- {c}" for c in selfie["candidates"]]
    lines += ["", f"Run time {meta['seconds']:.0f} s, load average {meta['loadavg'][0]:.1f}.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
