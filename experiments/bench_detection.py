"""MTCNN detection time per photo on this CPU: the deepface photos at their own sizes.

    .venv/bin/python experiments/bench_detection.py [--runs 3] [--every 1] [--torch-reference DIR [--torch-every k]]

For each ``../shared/assets/faces/deepface/*.jpg`` (sorted; ``--every k`` keeps every k-th): the photo
is decoded once (not timed), then ``detector.detect(photo)`` runs once cold (its time includes compiling
whatever canvas/batch shapes this photo is the first to need) and ``--runs`` more times; the median of
those warm runs is reported, wall time and process CPU time (``time.process_time``, all threads).
Nothing is downscaled: each photo is detected at its own size, which is listed with its timing.

``--torch-reference DIR``: also time facenet-pytorch 2.6.0's own ``MTCNN(select_largest=False,
post_process=False).detect`` on the same photos (DIR = an unpacked ``facenet_pytorch`` package, e.g.
from ``pip download --no-deps facenet-pytorch==2.6.0``; torchvision is not installed here, so its one
use, ``batched_nms``, is replaced by a stub written for this benchmark; the boxes of both are compared).

Writes experiments/results/bench_detection.{md,json}. About 5-10 minutes on 2 shared cores.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jaxprotect.detect import mtcnn_cascade  # noqa: E402
from jaxprotect.io import read_photo  # noqa: E402
from jaxprotect.registry import load_network  # noqa: E402

RESULTS = ROOT / "experiments" / "results"
PHOTOS = ROOT.parent / "shared" / "assets" / "faces" / "deepface"


def timed(fn, runs: int):
    """(cold wall, median warm wall, median warm CPU) seconds and the last result."""
    w = time.perf_counter()
    result = fn()
    cold = time.perf_counter() - w
    walls, cpus = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return cold, statistics.median(walls), statistics.median(cpus), result


def torch_reference(package_dir: Path):
    """facenet-pytorch's MTCNN, imported from ``package_dir`` with a torch-only ``batched_nms`` stub."""

    from torch_nms import batched_nms

    tv = types.ModuleType("torchvision")
    tv.ops = types.ModuleType("torchvision.ops")
    tv.ops.boxes = types.ModuleType("torchvision.ops.boxes")
    tv.ops.boxes.batched_nms = batched_nms
    tv.transforms = types.ModuleType("torchvision.transforms")
    tv.transforms.functional = types.ModuleType("torchvision.transforms.functional")
    for name, mod in {"torchvision": tv, "torchvision.ops": tv.ops, "torchvision.ops.boxes": tv.ops.boxes,
                      "torchvision.transforms": tv.transforms,
                      "torchvision.transforms.functional": tv.transforms.functional}.items():
        sys.modules.setdefault(name, mod)
    sys.path.insert(0, str(Path(package_dir).resolve().parent))
    from facenet_pytorch.models.mtcnn import MTCNN

    return MTCNN(select_largest=False, post_process=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--every", type=int, default=1, help="time every k-th photo only")
    parser.add_argument("--torch-reference", type=Path, default=None)
    parser.add_argument("--torch-every", type=int, default=1, help="time the reference on every k-th timed photo")
    args = parser.parse_args(argv)

    paths = sorted(glob.glob(str(PHOTOS / "*.jpg")))[:: args.every]
    detector = load_network("mtcnn")
    reference = torch_reference(args.torch_reference) if args.torch_reference else None
    load_before = os.getloadavg()
    rows = []
    for k, path in enumerate(paths):
        photo = read_photo(path)
        cold, wall, cpu, found = timed(lambda: detector.detect(photo), args.runs)
        row = {"photo": Path(path).name, "width": photo.shape[1], "height": photo.shape[0],
               "megapixels": photo.shape[0] * photo.shape[1] / 1e6, "faces": len(found.boxes),
               "jax_cold_s": cold, "jax_wall_s": wall, "jax_cpu_s": cpu}
        if reference is not None and k % args.torch_every == 0:
            from PIL import Image

            pil = Image.fromarray(photo)
            _, twall, tcpu, (boxes, probs) = timed(lambda: reference.detect(pil), args.runs)
            boxes = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, np.float64)
            row.update({"torch_wall_s": twall, "torch_cpu_s": tcpu, "torch_faces": len(boxes)})
            if len(boxes) == len(found.boxes) and len(boxes):
                row["max_box_diff_px"] = float(np.abs(boxes - found.boxes).max())
        rows.append(row)
        print(json.dumps(row), flush=True)
    load_after = os.getloadavg()
    caches = {n: getattr(mtcnn_cascade, f"_{n}")._cache_size() for n in ("pnet", "rnet", "onet")}
    meta = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs (shared with other jobs)",
        "python": platform.python_version(), "jax": jax.__version__, "backend": jax.default_backend(),
        "loadavg_before": load_before, "loadavg_after": load_after, "runs": args.runs,
        "photos": len(rows), "every": args.every, "torch_every": args.torch_every, "compiled_programs": caches,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_detection.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (RESULTS / "bench_detection.md").write_text(markdown(meta, rows))
    print(markdown(meta, rows))
    return 0


def markdown(meta, rows) -> str:
    has_torch = any("torch_wall_s" in r for r in rows)
    mp = sum(r["megapixels"] for r in rows)
    wall = [r["jax_wall_s"] for r in rows]
    lines = [
        "# MTCNN detection time per photo (CPU)",
        "",
        f"`experiments/bench_detection.py --runs {meta['runs']}"
        + (f" --every {meta['every']}" if meta["every"] > 1 else "") + "`: "
        f"{meta['photos']} deepface photos at their own sizes, `detector.detect(photo)` (jaxprotect, jitted nets, "
        "numpy bookkeeping). Cold = first call (includes compiling the shapes this photo is first to need, so it "
        "depends on the order); warm = median of the following runs. CPU = process CPU time (all threads).",
        "",
        f"Machine: {meta['machine']}; Python {meta['python']}, JAX {meta['jax']} ({meta['backend']}). "
        f"Load average before {tuple(round(x, 2) for x in meta['loadavg_before'])}, after "
        f"{tuple(round(x, 2) for x in meta['loadavg_after'])}: the cores were shared, so wall times are noisy.",
        f"Compiled programs after the run: {meta['compiled_programs']} (canvas/batch shapes are bucketed).",
        "",
        f"Summary: median warm wall {statistics.median(wall):.3f} s/photo; total warm wall {sum(wall):.1f} s for "
        f"{mp:.1f} MP ({sum(wall) / mp:.3f} s/MP); total cold wall {sum(r['jax_cold_s'] for r in rows):.1f} s.",
    ]
    if has_torch:
        both = [r for r in rows if "torch_wall_s" in r]
        diffs = [r["max_box_diff_px"] for r in both if "max_box_diff_px" in r]
        same = sum(r["torch_faces"] == r["faces"] for r in both)
        lines.append(
            f"facenet-pytorch 2.6.0 on {len(both)} of these photos (torch {__import__('torch').__version__}, CPU, "
            "its `batched_nms` replaced by a torch stub since torchvision is absent): warm wall "
            f"{sum(r['torch_wall_s'] for r in both):.1f} s in total vs {sum(r['jax_wall_s'] for r in both):.1f} s for "
            f"jaxprotect; CPU {sum(r['torch_cpu_s'] for r in both):.1f} s vs {sum(r['jax_cpu_s'] for r in both):.1f} s. "
            f"Same face count on {same}/{len(both)} photos; largest box difference "
            f"{max(diffs) if diffs else float('nan'):.2e} px."
        )
    lines += ["", "| photo | size | MP | faces | cold wall s | warm wall s | warm CPU s |"
              + (" torch wall s | torch CPU s |" if has_torch else ""),
              "| --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if has_torch else "")]
    for r in rows:
        line = (f"| {r['photo']} | {r['width']}x{r['height']} | {r['megapixels']:.2f} | {r['faces']} | "
                f"{r['jax_cold_s']:.2f} | {r['jax_wall_s']:.3f} | {r['jax_cpu_s']:.3f} |")
        if has_torch:
            line += (f" {r['torch_wall_s']:.3f} | {r['torch_cpu_s']:.3f} |" if "torch_wall_s" in r else " | |")
        lines.append(line)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
