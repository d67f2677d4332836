"""The pairing and identity name rules, the mapping file, and the robustness transforms going through files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxprotect.eval import robustness
from jaxprotect.eval.pairing import identity_of, pair_protected, read_identities, stem_candidates


def _touch(folder: Path, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(folder / n)


def test_stem_candidates_longest_first():
    assert stem_candidates("Aaron_Peirsol_0001_clip2protect.png") == [
        "Aaron_Peirsol_0001_clip2protect", "Aaron_Peirsol_0001", "Aaron_Peirsol", "Aaron"]
    assert stem_candidates("img1.protected.png") == ["img1.protected", "img1"]
    assert stem_candidates("ada-12.png") == ["ada-12", "ada"]


def test_name_rule_pairs_every_tool_layout(tmp_path):
    orig, prot = tmp_path / "orig", tmp_path / "prot"
    _touch(orig, "img1.jpg", "img10.jpg", "Aaron.jpg", "Aaron_Peirsol_0001.jpg", "085807.png", "ada.jpg", "unused.jpg")
    _touch(prot, "img1.protected.png", "img10.protected.png", "img1.side_by_side.png",  # jaxprotect protect
           "Aaron_Peirsol_0001_clip2protect.png", "Aaron_Peirsol_0001_clip2protect_side_by_side.png",
           "085807_00012.jpg", "ada-12.png", "astronaut.original.png", "nobody.protected.png")
    (prot / "img1.report.json").write_text("{}")
    p = pair_protected(prot, orig)
    got = {a.name: b.name for a, b, _ in p.pairs}
    assert got == {"img1.protected.png": "img1.jpg", "img10.protected.png": "img10.jpg",
                   "Aaron_Peirsol_0001_clip2protect.png": "Aaron_Peirsol_0001.jpg",  # the longest stem, not Aaron
                   "085807_00012.jpg": "085807.png", "ada-12.png": "ada.jpg"}
    assert [u.name for u, _ in p.unmatched] == ["nobody.protected.png"]  # reported, not dropped silently
    assert sorted(s.name for s in p.skipped) == ["Aaron_Peirsol_0001_clip2protect_side_by_side.png",
                                                 "astronaut.original.png", "img1.side_by_side.png"]
    assert sorted(u.name for u in p.unprotected) == ["Aaron.jpg", "unused.jpg"]
    assert set(p.how.values()) == {"name rule"}


def test_mapping_file_overrides_and_gives_targets(tmp_path):
    orig, prot, targets = tmp_path / "orig", tmp_path / "prot", tmp_path / "targets"
    _touch(orig, "a.jpg", "b.jpg")
    _touch(prot, "x_00001.png", "a.protected.png")
    _touch(targets, "t1.jpg", "t2.jpg")
    csv = tmp_path / "map.csv"
    csv.write_text("protected,original,target\nx_00001.png,b.jpg,t2.jpg\n")
    p = pair_protected(prot, orig, targets, csv)
    got = {a.name: (b.name, None if t is None else t.name) for a, b, t in p.pairs}
    # two targets and no mapping row: no target for a.protected.png
    assert got == {"a.protected.png": ("a.jpg", None), "x_00001.png": ("b.jpg", "t2.jpg")}
    assert p.how[prot / "x_00001.png"] == "mapping"
    js = tmp_path / "map.json"
    js.write_text(json.dumps({"x_00001.png": "a.jpg"}))
    single = tmp_path / "one_target"
    _touch(single, "only.jpg")
    p = pair_protected(prot, orig, single, js)
    assert {a.name: (b.name, t.name) for a, b, t in p.pairs} == {
        "a.protected.png": ("a.jpg", "only.jpg"), "x_00001.png": ("a.jpg", "only.jpg")}
    bad = tmp_path / "bad.csv"
    bad.write_text("protected,original\nx_00001.png,missing.jpg\n")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        pair_protected(prot, orig, mapping=bad)


def test_identity_rules(tmp_path):
    assert identity_of("Aaron_Peirsol_0001.jpg") == ("Aaron_Peirsol", "name rule")
    assert identity_of("img3.jpg") == ("img3", "own file")
    ids = tmp_path / "ids.csv"
    ids.write_text("file,identity\nimg3.jpg,angelina\n")
    table = read_identities(ids)
    assert identity_of("img3.jpg", table) == ("angelina", "identities file")
    assert identity_of(tmp_path / "img3.jpg", table) == ("angelina", "identities file")


def test_transforms_write_files_and_read_them_back(tmp_path):
    from skimage import data

    photo = data.astronaut()[:200, :240]
    for name in robustness.DEFAULT_TRANSFORMS:
        out = robustness.transformed_photo(photo, name, folder=tmp_path, stem="a")
        path = next(tmp_path.glob(f"a.{name}.*"))
        with Image.open(path) as im:  # the file on disk is what the transform says
            fmt, size = im.format, im.size
            decoded = np.asarray(im.convert("RGB"))
        assert fmt == ("JPEG" if name.startswith("jpeg") else "PNG"), name
        np.testing.assert_array_equal(out, decoded)  # the judges see exactly the decoded file
        if name == "downscale0.5":
            assert size == (120, 100) and out.shape == (100, 120, 3)
        else:
            assert out.shape == photo.shape and not np.array_equal(out, photo), name
    # lower JPEG quality -> larger error; blur removes detail
    err = {q: np.abs(robustness.transformed_photo(photo, f"jpeg{q}").astype(int) - photo).mean() for q in (90, 75, 50)}
    assert err[90] < err[75] < err[50]
    blurred = robustness.transformed_photo(photo, "blur1")
    assert np.abs(np.diff(blurred.astype(int), axis=1)).mean() < np.abs(np.diff(photo.astype(int), axis=1)).mean()


def test_transformed_files_go_through_read_photo(tmp_path, monkeypatch):
    calls = []
    real = robustness.read_photo
    monkeypatch.setattr(robustness, "read_photo", lambda p: calls.append(Path(p)) or real(p))
    photo = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with robustness.TransformedFiles() as files:
        out = files.get(photo, "jpeg75", "p0")
        assert calls == [files.folder / "p0.jpeg75.jpg"] and calls[0].exists()
        assert files.written == calls
    assert not calls[0].exists()  # the temporary folder is removed afterwards
    assert out.dtype == np.uint8 and out.shape == photo.shape
    with pytest.raises(ValueError, match="unknown transform"):
        robustness.write_transformed(photo, "jpeg10", tmp_path)
