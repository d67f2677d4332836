"""`jaxprotect evaluate` end to end on a tiny generated folder of real face photos.

Three people from the deepface test photos (same-person pairs of its master.csv), cropped to their central square at 224 px:
the first photo of each is "protected" (visible noise; one has its face painted over) and saved under
three tools' naming schemes; the second photo is the reference. Judged by the shipped foamliu
MobileFaceNet (cheap); the real judges (dlib, FaceNet-CASIA via OpenCV) run in the slow test.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxprotect.cli import main
from helpers.golden import asset_path

PEOPLE = {"ann": ("img20.jpg", "img21.jpg"), "bob": ("img16.jpg", "img17.jpg"), "cat": ("img3.jpg", "img12.jpg")}


def _small(path: Path, side: int = 224) -> Image.Image:
    """The photo's central square at ``side`` px: one size for every photo, so each network compiles once."""
    im = Image.open(path).convert("RGB")
    s = min(im.size)
    left, top = (im.width - s) // 2, (im.height - s) // 2
    return im.crop((left, top, left + s, top + s)).resize((side, side), Image.BICUBIC)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    deepface = asset_path("faces/deepface")
    root = tmp_path_factory.mktemp("evaluate")
    orig, prot, targets = root / "originals", root / "protected", root / "targets"
    for d in (orig, prot, targets):
        d.mkdir()
    rng = np.random.default_rng(0)
    names = {"ann": "ann_1.protected.png", "bob": "bob_1_clip2protect.png", "cat": "cat_1-12.png"}
    for person, (first, second) in PEOPLE.items():
        a, b = _small(deepface / first), _small(deepface / second)
        a.save(orig / f"{person}_1.png")
        b.save(orig / f"{person}_2.png")
        x = np.asarray(a).astype(np.int16)
        x = np.clip(x + rng.integers(-40, 41, x.shape), 0, 255).astype(np.uint8)  # visible noise
        if person == "cat":
            h, w = x.shape[:2]
            x[h // 6: 5 * h // 6, w // 6: 5 * w // 6] = 128  # face painted over: no face after
        Image.fromarray(x).save(prot / names[person])
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(prot / "ann_1.side_by_side.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(prot / "stranger.protected.png")
    _small(deepface / "img22.jpg").save(targets / "target.png")
    return root


def _run(folders, out, *extra):
    return main(["evaluate", str(folders / "protected"), "--originals", str(folders / "originals"),
                 "--targets", str(folders / "targets"), "--gallery", str(folders / "originals"),
                 "-o", str(out), *extra])


def _check_psr_against_pairs(report, judge):
    """Recompute the own-original dodging PSR from the per-pair scores in the JSON."""
    j = report["judges"][judge]
    for far, th in j["thresholds"]["calibrated"].items():
        thr = th["threshold"]
        counted = [p["scores"][judge] for p in report["pairs_detail"]
                   if p["scores"][judge]["own_original_before"] is not None
                   and (p["scores"][judge]["own_original_before"] > thr if j["higher_is_closer"]
                        else p["scores"][judge]["own_original_before"] < thr)]
        success = [s["own_original_after"] is None or (s["own_original_after"] <= thr if j["higher_is_closer"]
                                                         else s["own_original_after"] >= thr) for s in counted]
        assert j["dodging"]["own_original"]["calibrated"][far]["psr"] == pytest.approx(np.mean(success)), far


def test_evaluate_end_to_end(folders, tmp_path):
    out = tmp_path / "report"
    status = _run(folders, out, "--judges", "none", "--recogniser", "mobilefacenet_foamliu",
                  "--robustness", "jpeg75,downscale0.5")
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["dodging_margins.png", "report.json", "report.md",
                                                      "robustness_psr.png"]
    report = json.loads((out / "report.json").read_text())
    pairing = report["pairing"]
    assert pairing["pairs"] == 3
    assert [Path(u["path"]).name for u in pairing["unmatched"]] == ["stranger.protected.png"]
    assert [Path(s).name for s in pairing["skipped"]] == ["ann_1.side_by_side.png"]
    assert report["identities"]["rules"] == ["name rule", "own file"]  # <identity>_<n>, and the target
    assert report["identities"]["count"] == 4

    detail = {Path(p["protected"]).name: p for p in report["pairs_detail"]}
    assert {k: Path(v["original"]).name for k, v in detail.items()} == {
        "ann_1.protected.png": "ann_1.png", "bob_1_clip2protect.png": "bob_1.png", "cat_1-12.png": "cat_1.png"}
    q = detail["ann_1.protected.png"]["quality"]
    assert 15 < q["psnr"] < 30 and 0 < q["face_ssim"] < 0.9 and 0 < q["face_lpips"] < 1
    a = np.asarray(Image.open(folders / "originals" / "ann_1.png"))
    b = np.asarray(Image.open(folders / "protected" / "ann_1.protected.png"))
    mse = np.mean((a.astype(float) - b) ** 2)
    assert q["psnr"] == pytest.approx(10 * np.log10(255 ** 2 / mse), abs=1e-3)

    j = report["judges"]["mobilefacenet_foamliu"]
    assert set(j["thresholds"]["calibrated"]) == {"0.1", "0.01", "0.001"}
    assert j["thresholds"]["calibrated"]["0.1"]["negatives"] == 21 - 3  # 7 photos (3 people x 2 + the target), less 3 same-person pairs
    own = j["dodging"]["own_original"]["calibrated"]["0.01"]
    assert own["pairs"] == 3 and own["no_face_after"] >= 1  # cat's face was painted over
    _check_psr_against_pairs(report, "mobilefacenet_foamliu")
    assert j["dodging"]["other_photos"]["calibrated"]["0.01"]["pairs"] == 3  # each person's _2 photo
    assert j["impersonation"]["calibrated"]["0.01"]["pairs"] == 3
    ident = j["identification"]
    assert ident["gallery_identities"] == 3 and ident["after"]["probes_in_gallery"] == 3
    fc = ident["facecloak_top_n"]  # each probe's own file is left out: one same-identity photo each (C = 1)
    assert fc["probes"] >= 2 and set(fc) == {"probes", "psr_top1", "psr_top5"}
    assert all(0.0 <= v <= 1.0 for r in (fc["psr_top1"], fc["psr_top5"]) for v in r.values() if v is not None)
    assert set(j["robustness"]) == {"jpeg75", "downscale0.5"} and "control" in j["robustness"]["jpeg75"]
    emb = report["distribution"]["embeddings"]
    assert "not FID" in emb["frechet_name"] and "kid" in emb and emb["n_protected"] == 2  # one has no face

    md = (out / "report.md").read_text()
    for text in ("## Summary", "Dodging against the photo's own original", "Impersonation", "Identification",
                 "FaceCloak's top-n score",
                 "## Robustness", "## Image quality", "(not FID)", "stranger.protected.png"):
        assert text in md, text
    # the inputs are untouched and nothing was written next to them
    assert sorted(p.name for p in (folders / "originals").iterdir()) == sorted(
        f"{n}_{i}.png" for n in PEOPLE for i in (1, 2))


def test_evaluate_bad_arguments(folders, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing"), "--originals", str(folders / "originals"), "-o",
                 str(tmp_path / "r")]) == 2
    assert "not a folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", str(empty), "--originals", str(folders / "originals"), "-o", str(tmp_path / "r"),
                 "--judges", "none", "--robustness", "none", "--lpips", "none", "--no-plots"]) == 2
    assert "could be paired" in capsys.readouterr().err
    assert (tmp_path / "r" / "report.md").exists()  # the report still says what was found


@pytest.mark.slow
def test_evaluate_with_the_real_judges(folders, tmp_path):
    out = tmp_path / "report"
    assert _run(folders, out) == 0
    report = json.loads((out / "report.json").read_text())
    assert {"dlib", "facenet_casia"} <= set(report["judges"])
    for judge in ("dlib", "facenet_casia"):
        _check_psr_against_pairs(report, judge)
        assert set(report["judges"][judge]["robustness"]) == {"jpeg90", "jpeg75", "jpeg50", "downscale0.5", "blur1"}


def test_a_built_dataset_can_be_the_originals_and_the_gallery(folders, tmp_path):
    """`--originals identity_folder --data-dir D`: the dataset's photos are written out (bytes as stored)
    with their identity labels, then evaluated as a folder would be."""
    from jaxprotect import datasets

    data = tmp_path / "data"
    datasets.build("identity_folder", manual_dir=str(folders / "originals"), data_dir=str(data))
    out = tmp_path / "report"
    code = main(["evaluate", str(folders / "protected"), "--originals", "identity_folder", "--gallery",
                 "identity_folder", "--data-dir", str(data), "--judges", "none", "--recogniser",
                 "mobilefacenet_foamliu", "--robustness", "none", "--lpips", "none", "--no-plots", "-o", str(out)])
    assert code == 0
    written = sorted(p.name for p in (out / "originals.identity_folder").iterdir())
    assert written == sorted(p.name for p in (folders / "originals").iterdir())
    for name in written:
        assert (out / "originals.identity_folder" / name).read_bytes() == (folders / "originals" / name).read_bytes()
    report = json.loads((out / "report.json").read_text())
    assert report["judges"]["mobilefacenet_foamliu"]["identification"]["gallery_identities"] == 3
    assert main(["evaluate", str(folders / "protected"), "--originals", "identity_folder", "-o",
                 str(tmp_path / "r2")]) == 2  # a dataset needs --data-dir
