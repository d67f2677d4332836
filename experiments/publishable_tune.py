"""Tuning runs for issue 15 on a SMALL subset of deepface pairs (never the photos publishable.py reports on).

For each candidate configuration of the full-resolution attack (and today's crop-path defaults for
reference), the largest face of each tuning photo is protected and judged by dlib and FaceNet-CASIA
(OpenCV) against the OTHER photo of its same-person pairs, at thresholds calibrated at FAR 1% on
deepface's different-person pairs, before and after a real Pillow JPEG-75 round trip; face LPIPS
(real AlexNet) and SSIM on the MTCNN box. Prints one line per configuration and appends it to
experiments/results/publishable_tune.jsonl.

Run: python experiments/publishable_tune.py CONFIG [CONFIG...]   (names: publishable_common.candidate)
     python experiments/publishable_tune.py --render   -> experiments/results/publishable_tune.md
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

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


def render() -> int:
    """The tuning log as a table, in the order the runs were made."""
    rows = [json.loads(line) for line in OUT.read_text().splitlines() if line.strip()]
    lines = ["# Tuning runs (issue 15): 4 deepface photos, never reported on in publishable.md", "",
             "Photos: " + ", ".join(TUNE_PHOTOS) + " (first photos of same-person pairs), each judged against the "
             "other photos of its pairs (7 pairs per judge). Thresholds: FAR 1% on deepface's different-person pairs. "
             "`casia*` = FaceNet-CASIA was a surrogate of that run (not independent). Config keys: "
             "sur (mfn = MobileFaceNet; ens = + FaceNet-CASIA port), floor/ceil (texture budget, grey levels), chroma, "
             "cells (delta grid cells across the face; absent = photo pixels), steps, step, norm (sign or l2 steps), "
             "tw (pull to LFW-subset identities), lp (LPIPS weight), eot. Margin = median distance past the "
             "threshold (protected side positive). Face LPIPS-Alex / SSIM on the MTCNN box. In run order:", "",
             "| run | dlib PSR (JPEG 75) | dlib at 0.6 | dlib median margin | FaceNet-CASIA PSR (JPEG 75) | median margin "
             "| face LPIPS | face SSIM | time/photo wall/CPU s | load |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        d, c = r["summary"]["dlib"], r["summary"]["facenet_casia"]
        star = "" if c["independent"] else "*"
        lines.append(f"| `{r['method']}` | {d['psr_after']:.2f} ({d['psr_jpeg75']:.2f}) | {d['psr06_after']:.2f} | "
                     f"{d['margin_after'][2]:+.3f} | {c['psr_after']:.2f}{star} ({c['psr_jpeg75']:.2f}) | "
                     f"{c['margin_after'][2]:+.3f} | {r['face_lpips_mean']:.4f} | {r['face_ssim_mean']:.4f} | "
                     f"{r['wall_median_s']:.0f} / {r['cpu_median_s']:.0f} | {r['loadavg'][0]:.1f} |")
    lines += ["", "What was learnt: on the photo's own pixel grid the perturbation fools nothing (first two rows); a "
              "smooth grid of ~112 cells across the face plus a larger texture budget transfers to dlib; L2-normalised "
              "steps (112 grid) gave twice the dlib margin of sign steps (56 grid) at about the same LPIPS (+0.225 at "
              "0.109 vs +0.101 at 0.104; the grids differ too, so this is not a clean ablation); the LPIPS penalty trims LPIPS by ~11% for "
              "~4% of margin; a pull towards other identities hurts dlib. Today's TIP-IM default reaches 71% / 71% "
              "at face LPIPS 0.079 on these photos. 7 pairs per judge: one pair is 14 points. The first two rows ran "
              "before FaceNet-CASIA's surrogate was given its own box-and-margin crop (5-point aligned then).", ""]
    OUT.with_suffix(".md").write_text("\n".join(lines))
    return 0


def main(argv=None) -> int:
    names = (argv or sys.argv[1:])
    if names == ["--render"]:
        return render()
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
