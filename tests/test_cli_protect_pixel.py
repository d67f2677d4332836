"""``jaxprotect protect --method mifgsm|tipim``: outputs on a real photo, and bad photos skipped with a message."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from jaxprotect.cli import main
from jaxprotect.methods.pixel.presets import PRESETS


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    import skimage.data

    folder = tmp_path_factory.mktemp("in")
    face = skimage.data.astronaut()[0:224, 112:336]  # the astronaut's head, 224x224
    Image.fromarray(face).save(folder / "astronaut.png")
    (folder / "broken.jpg").write_text("this is a text file, not a JPEG")
    Image.fromarray(np.full((120, 120, 3), 200, np.uint8)).save(folder / "wall.png")
    return folder


@pytest.fixture(scope="module")
def batch(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    photos = [str(inputs / n) for n in ("broken.jpg", "astronaut.png", "wall.png")]
    code = main(["protect", "--method", "mifgsm", "--steps", "2", "--eps", "8", "--seed", "3", *photos, "-o", str(out)])
    return code, out


def test_batch_goes_on_and_fails_at_the_end(batch):
    code, out = batch
    assert code != 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["astronaut.mifgsm.json", "astronaut.mifgsm.png", "astronaut.mifgsm.side_by_side.png",
                     "job.json", "summary.json", "summary.md"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"done": 1, "failed": 2, "left": 0}
    reasons = {p["input"].rsplit("/", 1)[-1]: p.get("reason") for p in summary["photos"]}
    assert "not an image" in reasons["broken.jpg"] and "no face" in reasons["wall.png"]


def test_protected_photo_and_report(batch, inputs):
    _, out = batch
    original = np.asarray(Image.open(inputs / "astronaut.png").convert("RGB")).astype(int)
    with Image.open(out / "astronaut.mifgsm.png") as im:
        assert not im.info.get("exif") and "icc_profile" not in im.info
        protected = np.asarray(im.convert("RGB")).astype(int)
    assert protected.shape == original.shape
    assert 0 < np.abs(protected - original).max() <= 8  # eps in grey levels holds on the written photo
    pair = np.asarray(Image.open(out / "astronaut.mifgsm.side_by_side.png"))
    assert pair.shape[1] > 2 * original.shape[1] and pair.shape[0] > original.shape[0]  # labels above the panels
    report = json.loads((out / "astronaut.mifgsm.json").read_text())
    assert report["method"] == "mifgsm" and report["mode"] == "dodge"
    assert report["settings"]["config"]["steps"] == 2 and report["eps_grey_levels"] == pytest.approx(8.0)
    face = report["faces"][0]
    assert face["similarity_to_original"]["mobilefacenet_foamliu"] < 0.99
    assert 20 < report["photo_quality"]["psnr"] < 80 and 0.5 < report["photo_quality"]["ssim"] < 1.0


def test_messages_name_each_bad_photo(inputs, tmp_path, capsys):
    out = tmp_path / "o"
    code = main(["protect", "--method", "tipim", "--steps", "1", str(inputs / "broken.jpg"), str(inputs / "wall.png"),
                 "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.jpg" in err and "not an image" in err.lower()
    assert "wall.png" in err and "no face" in err.lower()
    assert sorted(p.name for p in out.iterdir()) == ["job.json", "summary.json", "summary.md"]  # no photo output


def test_outputs_do_not_depend_on_the_photo_name_or_order(inputs, tmp_path):
    """One key rule for every method: a photo's randomness comes from its pixels and the seed."""
    import shutil

    other = tmp_path / "renamed_copy.png"
    shutil.copy(inputs / "astronaut.png", other)
    outs = []
    for i, photos in enumerate(([inputs / "astronaut.png"], [inputs / "wall.png", other])):
        out = tmp_path / f"o{i}"
        main(["protect", "--method", "pgd", "--steps", "1", "--seed", "5", "--no-progress", *map(str, photos),
              "-o", str(out)])
        outs.append(out)
    a = np.asarray(Image.open(outs[0] / "astronaut.pgd.png"))
    b = np.asarray(Image.open(outs[1] / "renamed_copy.pgd.png"))
    np.testing.assert_array_equal(a, b)


def test_default_method_is_fullres_and_reports_every_face(inputs, tmp_path, capsys):
    """No --method: the full-resolution path; the report lists the faces found, protected and skipped."""
    out = tmp_path / "o"
    code = main(["protect", "--steps", "1", "--surrogates", "mobilefacenet_foamliu", "--judges", "none",
                 "--no-progress", str(inputs / "astronaut.png"), "-o", str(out)])
    assert code == 0
    report = json.loads((out / "astronaut.fullres.json").read_text())
    assert report["method"] == "fullres" and report["settings"]["strength"] == "balanced"
    assert len(report["faces_found"]) >= 1 and len(report["faces"]) == 1 and report["verdict"] is None
    face = report["faces"][0]
    ceiling = PRESETS["balanced"].budget.ceiling  # luma ceiling; chroma stays far below it
    assert face["prob"] >= 0.9 and 0 < face["face_quality"]["linf"] <= ceiling + 0.5
    original = np.asarray(Image.open(inputs / "astronaut.png").convert("RGB")).astype(int)
    protected = np.asarray(Image.open(out / "astronaut.fullres.png").convert("RGB")).astype(int)
    changed = np.abs(protected - original).sum(-1) > 0
    assert 0 < changed.mean() < 0.6  # the face, not the whole photo
    err = capsys.readouterr().err
    assert "face 0 [" in err and "protected" in err and "no verdict" in err


def test_strength_is_refused_with_a_crop_method(inputs, tmp_path, capsys):
    code = main(["protect", "--method", "pgd", "--strength", "strong", str(inputs / "astronaut.png"),
                 "-o", str(tmp_path / "o")])
    assert code == 2 and "--strength applies to --method fullres only" in capsys.readouterr().err
