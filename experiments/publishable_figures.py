"""Side-by-side crops at 100% zoom for the README: today's defaults against fullres balanced.

Only scikit-image's astronaut (public domain, NASA) may be shown: the deepface and CelebA-HQ photos are
test data only, and the FFHQ sample's own Flickr licence is not recorded (FFHQ mixes CC BY, CC BY-NC,
public-domain and government photos; the data set is CC BY-NC-SA), so it is not committed either.
Three crops of the one licensed photo instead of four photos: the whole face, the eyes, and the cheek and
mouth, each panel at 100% (one photo pixel = one image pixel).

Reads the protected photos experiments/publishable.py kept (``PUBLISHABLE_KEEP``, default
/tmp/publishable_images/<run>__astronaut.npy) and writes docs/images/astronaut_*.png.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
KEEP = Path(os.environ.get("PUBLISHABLE_KEEP", "/tmp/publishable_images"))
OUT = HERE.parent / "docs" / "images"
RUNS = (("tipim-default", "TIP-IM (today's default, eps 12)"), ("pgd-default", "PGD (eps 16)"),
        ("fullres-balanced", "fullres balanced (new default)"))
# (name, rows, columns) of the astronaut photo
CROPS = (("face", slice(20, 230), slice(150, 300)), ("eyes", slice(70, 130), slice(160, 290)),
         ("mouth", slice(120, 200), slice(170, 290)))


def main() -> int:
    import skimage.data

    from jaxprotect.io import write_photo
    from jaxprotect.io.side_by_side import side_by_side

    original = np.asarray(skimage.data.astronaut(), np.uint8)
    images = [(original, "original")]
    for run, label in RUNS:
        path = KEEP / f"{run}__astronaut.npy"
        if not path.exists():
            print(f"missing {path}: run experiments/publishable.py run {run}", file=sys.stderr)
            return 1
        images.append((np.load(path), label))
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows, cols in CROPS:
        panels = [img[rows, cols] for img, _ in images]
        labels = [label for _, label in images]
        if name == "photo":  # the whole photo: two panels per image row would be too wide; original vs new only
            panels, labels = [panels[0], panels[1], panels[3]], [labels[0], labels[1], labels[3]]
        write_photo(OUT / f"astronaut_{name}.png", side_by_side(panels, labels))
        print(f"wrote {OUT / f'astronaut_{name}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
