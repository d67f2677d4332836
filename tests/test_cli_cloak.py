"""``jaxprotect cloak learn|apply`` on scikit-image's astronaut: the cloak file, the outputs, bad photos."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from jaxprotect.cli import main


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    import skimage.data

    folder = tmp_path_factory.mktemp("in")
    a = skimage.data.astronaut()
    Image.fromarray(a[0:224, 112:336]).save(folder / "me.png")
    Image.fromarray(a[10:250, 90:330][:, ::-1]).save(folder / "me_flipped.jpg", quality=92)
    (folder / "broken.jpg").write_text("this is a text file, not a JPEG")
    Image.fromarray(np.full((120, 120, 3), 200, np.uint8)).save(folder / "wall.png")
    return folder


@pytest.fixture(scope="module")
def cloak_file(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("cloak") / "me.cloak.npz"
    code = main(["cloak", "learn", str(inputs / "me.png"), "--augment", "2", "--epochs", "1", "--seed", "4",
                 "-o", str(out)])
    assert code == 0
    return out


def test_cloak_file_holds_parts_and_settings(cloak_file):
    with np.load(cloak_file, allow_pickle=False) as z:
        assert z["mask"].shape == (112, 112, 3) and z["stickers"].shape == (4, 112, 112, 3)
        assert z["highpass"].shape == (112, 112, 3) and z["filter"].shape == (112, 112, 3)
        settings = json.loads(str(z["config_json"]))
        meta = json.loads(str(z["meta_json"]))
        assert np.abs(z["mask"]).max() <= 8 / 255 + 1e-7
    assert settings["mode"] == "faithful" and settings["epochs"] == 1
    assert meta["synthetic_source"] == "augment" and meta["images"] == 3 and meta["seed"] == 4
    assert meta["surrogates"] == ["mobilefacenet_foamliu"] and meta["anchors"]["far_rule"] == "fixed"


def test_apply_writes_outputs_and_goes_past_bad_photos(cloak_file, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    photos = [str(inputs / n) for n in ("broken.jpg", "me_flipped.jpg", "wall.png")]
    code = main(["cloak", "apply", str(cloak_file), *photos, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.jpg" in err and "wall.png" in err and "no face" in err.lower()
    assert {"me_flipped.facecloak.png", "me_flipped.facecloak.json", "me_flipped.facecloak.side_by_side.png",
            "job.json", "summary.json", "summary.md"} <= {p.name for p in out.iterdir()}
    assert not any(p.name.startswith(("broken", "wall")) for p in out.iterdir())
    original = np.asarray(Image.open(inputs / "me_flipped.jpg").convert("RGB")).astype(int)
    with Image.open(out / "me_flipped.facecloak.png") as im:
        assert not im.info.get("exif") and "icc_profile" not in im.info
        cloaked = np.asarray(im.convert("RGB")).astype(int)
    assert cloaked.shape == original.shape and 0 < np.abs(cloaked - original).max() <= 8 + 32 + 1
    report = json.loads((out / "me_flipped.facecloak.json").read_text())
    assert report["method"] == "facecloak" and report["mode"] == "faithful"
    assert report["learnt_with"]["synthetic_source"] == "augment"
    assert 0 < report["surrogate_cos_to_original"]["mobilefacenet_foamliu"] < 1
    assert 20 < report["photo_quality"]["psnr"] < 80


def test_never_writes_over_an_input(inputs, cloak_file, tmp_path, capsys):
    code = main(["cloak", "learn", str(inputs / "me.png"), "--no-synthetic", "--epochs", "1", "-o", str(inputs / "me.png")])
    assert code == 1 and "input photo" in capsys.readouterr().err
    assert Image.open(inputs / "me.png").size == (224, 224)
    bad = tmp_path / "bad.cloak.npz"
    bad.write_bytes(b"nope")
    with pytest.raises(SystemExit, match="not a readable cloak file"):
        main(["cloak", "apply", str(bad), str(inputs / "me.png"), "-o", str(tmp_path / "o")])


def test_protect_method_facecloak_learns_and_applies_per_photo(inputs, tmp_path):
    """``protect --method facecloak``: a cloak learnt from each photo, written under the shared names."""
    out = tmp_path / "p"
    code = main(["protect", "--method", "facecloak", "--steps", "1", "--augment", "1", "--eps", "6", "--no-progress",
                 str(inputs / "me.png"), str(inputs / "broken.jpg"), "-o", str(out)])
    assert code == 1  # the broken photo is reported; the good one is written
    report = json.loads((out / "me.facecloak.json").read_text())
    assert report["method"] == "facecloak" and report["settings"]["epochs"] == 1
    assert report["settings"]["eps_levels"] == 6 and report["surrogates"] == ["mobilefacenet_foamliu"]
    # the verdict of every installed judge (none installed: an empty list and no verdict)
    assert (report["verdict"] is None) == (not report["judges_installed"])
    if report["verdict"] is not None:
        assert len(report["verdict"]["faces"]) == 1
    assert (out / "me.facecloak.side_by_side.png").exists()
    original = np.asarray(Image.open(inputs / "me.png").convert("RGB")).astype(int)
    cloaked = np.asarray(Image.open(out / "me.facecloak.png").convert("RGB")).astype(int)
    assert cloaked.shape == original.shape and np.abs(cloaked - original).max() > 0
    assert not list(out.glob("broken.facecloak.*"))


@pytest.mark.parametrize("argv, flag", [(["--method", "facecloak", "--strength", "subtle"], "--strength"),
                                         (["--method", "tipim", "--mode", "corrected"], "--mode"),
                                         (["--method", "clip2protect", "--judges", "none"], "--judges"),
                                         (["--method", "clip2protect", "--surrogates", "x"], "--surrogates")])
def test_protect_refuses_another_familys_flag(inputs, tmp_path, capsys, argv, flag):
    code = main(["protect", *argv, str(inputs / "me.png"), "-o", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert flag in err and argv[1] in err and not (tmp_path / "o").exists()
