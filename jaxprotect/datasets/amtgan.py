"""The AMT-GAN evaluation protocol's data (also CLIP2Protect's): four target identities, CelebA-HQ and LADN.

Where each piece comes from (checked in the upstream repositories and their issue threads):

* **The four target identities.** Each has a *target* photo (the attack's loss anchor) and a
  different *evaluation* photo of the same person (the success test compares protected photos
  with it). The file names and the face boxes are in CLIP2Protect ``utils/clip2protect_utils.py``
  ``get_target`` (choices ``'1'``..``'4'``, default ``'2'``); DiffAM ``utils/image_processing.py``
  ``get_target_image`` names the same four pairs (``assets/datasets/target/*.jpg`` and
  ``assets/datasets/test/*.jpg``). The photos themselves come with AMT-GAN: its ``assets.zip``
  holds ``target/085807.jpg`` and ``test/047073.jpg`` (``train.py``/``test.py`` defaults) and the
  other six are in ``pair.zip`` attached to CGCL-codes/AMT-GAN issues #4 and #15 (the identities
  of its Table 1); CLIP2Protect's repository ships ``085807.jpg`` and ``047073.jpg``. Users bring
  the photos; only names and boxes are shipped here.
* **CelebA-HQ, 1,000 test photos.** NOT published as a list anywhere we could find. AMT-GAN's
  ``test.py`` evaluates ``os.listdir("assets/datasets/CelebA-HQ")``, a folder inside its
  ``assets.zip`` (Google Drive; 100 photos until 2022-05-10, 1,000 since, AMT-GAN issue #2);
  CLIP2Protect points to AMT-GAN for the data (README; issues #10 and #14: "the 1,000 images as
  provided by AMT-GAN"). So the default reads that folder as it is and checks it holds 1,000
  photos. Which 250 photos AMT-GAN (and DiffAM) aimed at each target is not published either
  (AMT-GAN issue #16, DiffAM issues #3 and #7, open); CLIP2Protect's author says every photo is
  used with every target (second-hand, DiffAM #3), which is what a ``targets`` dataset supports:
  no group label is invented here.
  Alternatives: ``image_list=<file>`` (your own list, one name per line), or
  ``image_list="diffam"``: DiffAM's own, reproducible 1,000-photo test split of CelebAMask-HQ
  (``datasets/celeba_dataset.py``: the lines of ``CelebAMask-HQ-attribute-anno.txt`` after its two
  header lines, shuffled by ``random.seed(1234); random.shuffle``, items 15000:16000; photos
  ``CelebA-HQ-img/<n>.jpg``). It is DiffAM's split, not AMT-GAN's.
* **LADN, 332 photos.** The AMT-GAN paper evaluates "332 non-makeup images" of LADN (issue #16
  quotes it), LADN's dataset (wangguanzhi/LADN, Google Drive) has a ``before`` folder of
  non-makeup photos (333 by a user's count, parham1998/Facial-Privacy-Protection issue #3), and
  which one was left out is not published. So ``ladn`` reads every photo of the folder given
  (``images_dir``, default ``manual_dir`` itself), or ``image_list=<file>``; it checks no count.

Datasets (each one split): ``<builder>/images`` (split ``test``): the photos, fields ``path``
(as listed, relative to ``images_dir``), ``image`` (original bytes), ``sha256``, ``size_bytes``;
in sorted order of ``path`` when read from a folder, else in list order.
``<builder>/targets`` (split ``targets``): one record per target choice: ``choice`` (1..4),
``target_path``/``target_image``/``target_sha256``/``target_crop`` and the same four ``eval_*``
fields. ``*_crop`` is ``[y0, y1, x0, x1]`` (rows y0:y1, columns x0:x1, before CLIP2Protect's
``margin``), on the 1024x1024 photo. AMT-GAN's own ``test.py`` embeds the WHOLE evaluation photo
uncropped; CLIP2Protect crops both. Target photos are looked for in ``targets_dir`` (default
``manual_dir``) under ``target/`` or ``target_images/`` (loss photo) and ``test/`` or
``test_images/`` (evaluation photo): AMT-GAN's and DiffAM's ``assets/datasets`` layout, and
parham1998/Facial-Privacy-Protection's ``assets``. Option ``targets`` picks the choices to include.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from jaxprotect.datasets.base import LocalBuilder
from jaxprotect.datasets.errors import ManualDirError
from jaxprotect.datasets.files import (
    list_photos,
    listing_fingerprint,
    photo_features,
    photo_record,
    read_list_file,
    sha256_bytes,
)

__all__ = ["AmtganTarget", "AMTGAN_TARGETS", "CelebahqAmtgan", "Ladn", "diffam_test_names"]


class AmtganTarget(NamedTuple):
    """One AMT-GAN target identity: loss photo and evaluation photo, each with its ``[y0, y1, x0, x1]`` box."""

    choice: int
    target: str
    target_crop: tuple[int, int, int, int]
    eval: str
    eval_crop: tuple[int, int, int, int]


# CLIP2Protect utils/clip2protect_utils.py get_target (choice '2' is its default).
AMTGAN_TARGETS = {
    1: AmtganTarget(1, "005869.jpg", (168, 912, 205, 765), "008793.jpg", (145, 920, 202, 775)),
    2: AmtganTarget(2, "085807.jpg", (187, 891, 244, 764), "047073.jpg", (234, 905, 266, 791)),
    3: AmtganTarget(3, "116481.jpg", (214, 955, 188, 773), "055622.jpg", (185, 931, 198, 780)),
    4: AmtganTarget(4, "169284.jpg", (173, 925, 233, 792), "166607.jpg", (172, 917, 219, 779)),
}

_TARGET_DIRS = ("target", "target_images")
_EVAL_DIRS = ("test", "test_images")
DIFFAM_SEED = 1234
DIFFAM_TEST_SLICE = slice(15000, 16000)


def diffam_test_names(attribute_file: Path) -> list[str]:
    """DiffAM's CelebA-HQ test split (``datasets/celeba_dataset.py``, ``mark != 0``): 1,000 file names.

    The lines of CelebAMask-HQ's ``CelebAMask-HQ-attribute-anno.txt`` after its two header lines,
    shuffled with ``random.seed(1234); random.shuffle(lines)``, items 15000..15999, first field
    of each. (Depends on CPython's ``shuffle``, unchanged since Python 3.2.)
    """
    attribute_file = Path(attribute_file)
    if not attribute_file.is_file():
        raise ManualDirError(
            f"{attribute_file} does not exist (CelebAMask-HQ's attribute file is needed for DiffAM's split)"
        )
    with open(attribute_file) as f:
        lines = [line.rstrip() for line in f][2:]
    if len(lines) < DIFFAM_TEST_SLICE.stop:
        raise ManualDirError(
            f"{attribute_file}: {len(lines)} photo lines; DiffAM's split needs CelebAMask-HQ's full file (30000)"
        )
    random.Random(DIFFAM_SEED).shuffle(lines)
    return [line.split()[0] for line in lines[DIFFAM_TEST_SLICE]]


def _find(folder: Path, subdirs: tuple[str, ...], name: str) -> Path | None:
    for sub in subdirs:
        candidate = folder / sub / name
        if candidate.is_file():
            return candidate
    return None


class _AmtganProtocol(LocalBuilder, skip_registration=True):
    """Shared by ``celebahq_amtgan`` and ``ladn``: configs ``images`` and ``targets``."""

    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="images", description="The test photos."),
        tfds.core.BuilderConfig(name="targets", description="The four AMT-GAN target identities."),
    ]
    SPLITS = {"images": "test", "targets": "targets"}
    OPTIONS = {"image_list": None, "images_dir": None, "targets_dir": None, "targets": (1, 2, 3, 4)}
    CONFIG_OPTIONS = {"images": ("image_list", "images_dir"), "targets": ("targets_dir", "targets")}

    def _features(self):
        if self.builder_config.name == "images":
            return photo_features()
        side = {}
        for role in ("target", "eval"):
            side[f"{role}_path"] = tfds.features.Text()
            side[f"{role}_image"] = tfds.features.Tensor(shape=(), dtype=np.object_)
            side[f"{role}_sha256"] = tfds.features.Text()
            side[f"{role}_crop"] = tfds.features.Tensor(shape=(4,), dtype=np.int64)
        return tfds.features.FeaturesDict({"choice": tfds.features.Scalar(dtype=np.int64), **side})

    # ---- images --------------------------------------------------------------------------------
    def _images(self, manual_dir: Path) -> tuple[Path, list[str]]:
        raise NotImplementedError

    def _listed(self, images_dir: Path, names: list[str], list_name: str) -> list[str]:
        missing = [n for n in names if not (images_dir / n).is_file()]
        if missing:
            raise ManualDirError(
                f"{len(missing)} of the {len(names)} photos named by {list_name} are not in {images_dir}, "
                f"e.g. {missing[:3]}"
            )
        return names

    # ---- targets -------------------------------------------------------------------------------
    def _target_files(self, manual_dir: Path) -> list[tuple[AmtganTarget, Path, Path]]:
        folder = Path(self.options["targets_dir"] or manual_dir)
        choices = tuple(int(c) for c in self.options["targets"])
        if not choices or any(c not in AMTGAN_TARGETS for c in choices) or len(set(choices)) != len(choices):
            raise ValueError(f"targets must be distinct choices among 1, 2, 3, 4; got {self.options['targets']!r}")
        found, missing = [], []
        for c in choices:
            t = AMTGAN_TARGETS[c]
            target, evaluation = _find(folder, _TARGET_DIRS, t.target), _find(folder, _EVAL_DIRS, t.eval)
            if target is None:
                missing.append(f"{t.target} (choice {c}, loss photo)")
            if evaluation is None:
                missing.append(f"{t.eval} (choice {c}, evaluation photo)")
            found.append((t, target, evaluation))
        if missing:
            raise ManualDirError(
                f"{folder}: missing target photo(s) {', '.join(missing)}; looked in target/ and target_images/ "
                "(loss photos), test/ and test_images/ (evaluation photos). They come with "
                "AMT-GAN (assets.zip, and pair.zip attached to its GitHub issue #15); build with e.g. targets=(2,) "
                "to use fewer identities."
            )
        return found

    def _describe_files(self, manual_dir: Path) -> dict:
        if self.builder_config.name == "targets":
            folder = Path(self.options["targets_dir"] or manual_dir)
            files = {}
            for t, target, evaluation in self._target_files(manual_dir):
                for path in (target, evaluation):
                    files[path.relative_to(folder).as_posix()] = sha256_bytes(path.read_bytes())
            return {"targets_dir": os.path.realpath(folder), "files": files}
        images_dir, names = self._images(manual_dir)
        return {"images_dir": os.path.realpath(images_dir), "count": len(names),
                "files": listing_fingerprint(images_dir, names)}

    def _generate_examples(self, manual_dir: Path):
        if self.builder_config.name == "targets":
            folder = Path(self.options["targets_dir"] or manual_dir)
            for t, target, evaluation in self._target_files(manual_dir):
                record = {"choice": t.choice}
                for role, path, crop in (("target", target, t.target_crop), ("eval", evaluation, t.eval_crop)):
                    data = path.read_bytes()
                    record.update({f"{role}_path": path.relative_to(folder).as_posix(), f"{role}_image": data,
                                   f"{role}_sha256": sha256_bytes(data), f"{role}_crop": np.asarray(crop, np.int64)})
                yield str(t.choice), record
            return
        images_dir, names = self._images(manual_dir)
        for name in names:
            yield name, photo_record((images_dir / name).read_bytes(), name)


class CelebahqAmtgan(_AmtganProtocol, skip_registration=True):
    """CelebA-HQ test photos of the AMT-GAN / CLIP2Protect protocol and its four target identities."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "manual_dir is AMT-GAN's assets/datasets folder (from its assets.zip): the 1,000 test photos in "
        "CelebA-HQ/, target photos in target/ and test/ (add the six from pair.zip, AMT-GAN issue #15). "
        "image_list=<file> reads your own list instead; image_list='diffam' reads DiffAM's split from a "
        "CelebAMask-HQ folder (CelebAMask-HQ-attribute-anno.txt and CelebA-HQ-img/)."
    )
    AMTGAN_COUNT = 1000

    def _images(self, manual_dir: Path) -> tuple[Path, list[str]]:
        image_list = self.options["image_list"]
        if image_list == "diffam":
            images_dir = manual_dir / (self.options["images_dir"] or "CelebA-HQ-img")
            names = diffam_test_names(manual_dir / "CelebAMask-HQ-attribute-anno.txt")
            return images_dir, self._listed(images_dir, names, "DiffAM's split")
        images_dir = manual_dir / (self.options["images_dir"] or "CelebA-HQ")
        if not images_dir.is_dir():
            raise ManualDirError(f"{images_dir}: no such folder (AMT-GAN's assets/datasets/CelebA-HQ is expected)")
        if image_list is not None:
            return images_dir, self._listed(images_dir, read_list_file(Path(image_list)), f"list file {image_list}")
        names, _ = list_photos(images_dir)
        if len(names) != self.AMTGAN_COUNT:
            raise ManualDirError(
                f"{images_dir} holds {len(names)} photos; AMT-GAN's CelebA-HQ test folder holds {self.AMTGAN_COUNT}. "
                "For another selection pass image_list=<file> (one file name per line)."
            )
        return images_dir, names


class Ladn(_AmtganProtocol, skip_registration=True):
    """LADN's non-makeup photos (AMT-GAN's 332-photo test set) and the four AMT-GAN target identities."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "manual_dir (or images_dir inside it) is the folder of LADN non-makeup photos (LADN's 'before' "
        "folder); which 332 of them AMT-GAN used is not published: image_list=<file> restricts to your list. "
        "The four target identities' photos are looked for in targets_dir (default manual_dir)."
    )

    def _images(self, manual_dir: Path) -> tuple[Path, list[str]]:
        images_dir = manual_dir / (self.options["images_dir"] or ".")
        if not images_dir.is_dir():
            raise ManualDirError(f"{images_dir}: no such folder")
        if self.options["image_list"] is not None:
            image_list = self.options["image_list"]
            return images_dir, self._listed(images_dir, read_list_file(Path(image_list)), f"list file {image_list}")
        names, _ = list_photos(images_dir)
        if not names:
            raise ManualDirError(f"{images_dir}: no photo found")
        return images_dir, names
