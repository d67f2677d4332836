"""Files the documentation's code blocks name, made in the block's working folder before it runs
(``<!-- test: run setup=NAME -->`` in README.md / docs/*.md; see tests/test_docs.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def photos(folder: Path) -> None:
    """``photos/astronaut.jpg`` (scikit-image's public-domain astronaut) and ``photos/group/``."""
    import skimage.data
    from PIL import Image

    (folder / "photos" / "group").mkdir(parents=True)
    Image.fromarray(skimage.data.astronaut()).save(folder / "photos" / "astronaut.jpg", quality=95)
    Image.fromarray(np.asarray(skimage.data.astronaut())[:256, 128:384]).save(folder / "photos" / "group" / "head.png")


def recogniser_checkpoints(folder: Path) -> None:
    """``models/{irse50,ir152,facenet,mobile_face}.pth``: the AMT-GAN recognisers with golden-rule weights,
    saved by torch as users' files are (stand-ins for the real weights, which cannot be had here)."""
    import torch

    from helpers.golden import load_golden
    from helpers.weight_rule import rule_weights

    (folder / "models").mkdir(exist_ok=True)
    for name, file in (("irse50", "irse50"), ("ir152", "ir152"), ("facenet", "facenet"), ("mobileface", "mobile_face")):
        sd = {k: torch.from_numpy(np.asarray(v)) for k, v in rule_weights(load_golden(f"{name}.npz")).items()}
        torch.save(sd, folder / "models" / f"{file}.pth")
