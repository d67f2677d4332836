"""Tuning runs for issue 15 on a SMALL subset of deepface pairs (never the photos publishable.py reports on).

For each candidate configuration of the full-resolution attack (and today's crop-path defaults for
reference), the largest face of each tuning photo is protected and judged by dlib and FaceNet-CASIA
(OpenCV) against the OTHER photo of its same-person pairs, at thresholds calibrated at FAR 1% on
deepface's different-person pairs, before and after a real Pillow JPEG-75 round trip; face LPIPS
(real AlexNet) and SSIM on the MTCNN box. Prints one line per configuration and appends it to
experiments/results/publishable_tune.jsonl.

Run: python experiments/publishable_tune.py CONFIG [CONFIG...]   (names: see CANDIDATES)
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from publishable_common import (  # noqa: E402
    TUNE_PHOTOS,
    Context,
    candidate,
    evaluate_method,
)

OUT = HERE / "results" / "publishable_tune.jsonl"


def main(argv=None) -> int:
    names = (argv or sys.argv[1:])
    ctx = Context.load(TUNE_PHOTOS)
    for name in names:
        method = candidate(name)
        t0 = time.perf_counter()
        row = evaluate_method(ctx, name, method)
        row.pop("protected_images")
        row["loadavg"] = os.getloadavg()
        row["total_s"] = time.perf_counter() - t0
        print(json.dumps({k: v for k, v in row.items() if k not in ("pairs", "photos")}), flush=True)
        with open(OUT, "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
