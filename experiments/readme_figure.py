"""The README's picture: scikit-image's astronaut, original | protected by plain ``jaxprotect protect``.

Runs the default command (fullres, ``--strength balanced``, every installed judge) on the astronaut photo
(public domain, NASA; ships inside scikit-image) in a temporary job folder, then writes the upper part of
both photos at 100% zoom (one photo pixel = one image pixel), labelled, with the judges' verdict under them,
to docs/images/astronaut_protected.png. Only this photo may be shown: the other test photos are not ours to
publish (see ../shared/assets/README.md).

    python experiments/readme_figure.py [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
OUT = HERE.parent / "docs" / "images" / "astronaut_protected.png"
ROWS, COLS = slice(0, 352), slice(64, 448)  # the head and shoulders of the 512x512 photo


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="job folder to keep (default: a temporary one)")
    args = parser.parse_args(argv)

    import skimage.data
    from PIL import Image

    from jaxprotect.cli import main as jaxprotect
    from jaxprotect.io import read_photo, write_photo
    from jaxprotect.io.side_by_side import side_by_side
    from jaxprotect.judges.photo_judges import PhotoJudges

    with tempfile.TemporaryDirectory() as tmp:
        job = args.keep or Path(tmp) / "out"
        photo_path = Path(tmp) / "astronaut.png"
        Image.fromarray(skimage.data.astronaut()).save(photo_path)
        status = jaxprotect(["protect", str(photo_path), "-o", str(job), "--no-progress"])
        if status:
            return status
        report = json.loads((job / "astronaut.fullres.json").read_text())
        original = read_photo(photo_path)
        protected = read_photo(job / "astronaut.fullres.png")
    s = report["settings"]
    budget = report["settings"]["config"]["budget"]
    label = (f"protected: jaxprotect protect (fullres {s['strength']}, "
             f"{budget['floor']:g}-{budget['ceiling']:g}/255, {s['config']['steps']} steps)")
    caption = PhotoJudges.caption(report["verdict"]) if report["verdict"] else None
    figure = side_by_side([original[ROWS, COLS], protected[ROWS, COLS]], ["original", label], caption=caption)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_photo(OUT, np.asarray(figure))
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB); {report['seconds']} s for the photo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
