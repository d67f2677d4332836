"""experiments/compare_methods.py's render step on small synthetic run JSON files (no network, no photo)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

compare_methods = pytest.importorskip("compare_methods")

THR = {"dlib": 0.6, "facenet_casia": 0.5}
CAL = {"dlib": {"threshold": 0.6, "negatives": 100, "far": 0.01, "metric": "euclidean distance"},
       "facenet_casia": {"threshold": 0.5, "negatives": 100, "far": 0.01, "metric": "cosine similarity"}}


def _pair(judge, a, b, after, jpeg75):
    before = 0.3 if judge == "dlib" else 0.8  # matched before protection
    return {"judge": judge, "pair": [a, b], "before": before, "after": after, "jpeg90": after, "jpeg75": jpeg75,
            "jpeg50": jpeg75}


def _run(name, surrogates, dlib_scores, casia_scores, lpips):
    """A run JSON: two deepface photos (two pairs each judge) and one self-matched photo."""
    photos = {}
    for k, pname in enumerate(("img1.jpg", "img2.jpg")):
        photos[pname] = {
            "wall_s": 10.0 + k, "cpu_s": 5.0 + k, "skipped": 0, "found": 1,
            "faces": [{"index": 0, "box": [0, 0, 10, 10], "prob": 0.99,
                       "quality": {"face_ssim": 0.9, "face_psnr": 30.0, "face_lpips": lpips[k]}}],
            "pairs": [_pair("dlib", pname, "other.jpg", *dlib_scores[k]),
                      _pair("facenet_casia", pname, "other.jpg", *casia_scores[k])],
        }
    photos["astronaut"] = {
        "wall_s": 20.0, "cpu_s": 9.0, "skipped": 0, "found": 1,
        "faces": [{"index": 0, "box": [0, 0, 10, 10], "prob": 0.99,
                   "quality": {"face_ssim": 0.8, "face_psnr": 28.0, "face_lpips": lpips[2]}}],
        "self": [{"judge": "dlib", "face": 0, "after": 0.7, "jpeg90": 0.7, "jpeg75": 0.5, "jpeg50": 0.5, "found": True},
                 {"judge": "facenet_casia", "face": 0, "after": 0.9, "jpeg90": 0.9, "jpeg75": 0.9, "jpeg50": 0.9,
                  "found": True}],
    }
    judges = sorted({"facenet_casia"} & set(surrogates))
    return {"name": name, "label": f"label of {name}", "settings": {}, "seed": 0, "surrogates": list(surrogates),
            "surrogate_judges": judges, "thresholds": THR, "calibration": CAL, "photos": photos,
            "loadavg": [[2.0, 2.0, 2.0], [3.0, 3.0, 3.0]], "tuned_on": ["img3.jpg"]}


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    # pgd: dlib (distance, protected when >= 0.6): pair 1 0.7 (yes) / JPEG 0.5 (no); pair 2 0.65 / 0.62 (yes, yes)
    # casia (similarity, protected when <= 0.5): 0.4 / 0.6 and 0.9 / 0.9 -> 50% / 0%
    pgd = _run("pgd-default", ["mobilefacenet_foamliu"], [(0.7, 0.5), (0.65, 0.62)], [(0.4, 0.6), (0.9, 0.9)],
               [0.1, 0.2, 0.3])
    # fullres ensemble: facenet_casia is a surrogate, its column must be bracketed and not plotted
    full = _run("fullres-balanced", ["mobilefacenet_foamliu", "facenet_casia"], [(0.5, 0.5), (None, 0.55)],
                [(0.1, 0.1), (0.1, 0.1)], [0.05, 0.06, 0.07])
    for data in (pgd, full):
        (d / f"{data['name']}.json").write_text(json.dumps(data))
    return d


def test_render_psr_by_hand(run_dir, tmp_path):
    out = tmp_path / "compare"
    data = compare_methods.render(run_dir, out, unavailable={"CLIP2Protect": "cannot run here: no weights"}, png=False)
    by_name = {m["name"]: m for m in data["methods"]}
    pgd = by_name["pgd-default"]["judges"]
    assert pgd["dlib"]["psr_after"] == pytest.approx(1.0)
    assert pgd["dlib"]["psr_jpeg75"] == pytest.approx(0.5)
    assert pgd["facenet_casia"]["psr_after"] == pytest.approx(0.5)
    assert pgd["facenet_casia"]["psr_jpeg75"] == pytest.approx(0.0)
    assert pgd["dlib"]["self_after"] == 1.0 and pgd["dlib"]["self_jpeg75"] == 0.0
    assert pgd["facenet_casia"]["self_after"] == 0.0
    assert pgd["dlib"]["independent"] and pgd["facenet_casia"]["independent"]
    # a face the judge no longer finds (None) counts as protected: dlib 0.5 (no), None (yes)
    full = by_name["fullres-balanced"]["judges"]
    assert full["dlib"]["psr_after"] == pytest.approx(0.5)
    assert full["dlib"]["psr_jpeg75"] == pytest.approx(0.0)
    assert not full["facenet_casia"]["independent"]
    # margins: dlib distance minus threshold, quantile 50% of (0.1, 0.05)
    assert pgd["dlib"]["margin_q"][2] == pytest.approx(0.075)
    assert by_name["pgd-default"]["face_lpips_median"] == pytest.approx(0.2)
    assert by_name["pgd-default"]["wall_median_s"] == pytest.approx(11.0)
    assert by_name["pgd-default"]["cpu_median_s"] == pytest.approx(6.0)

    md = out.with_suffix(".md").read_text()
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    pgd_row = next(v for k, v in rows.items() if "`pgd-default`" in k)
    assert "| 100% / 50% |" in pgd_row and "| 50% / 0% |" in pgd_row
    full_row = next(v for k, v in rows.items() if "`fullres-balanced`" in k)
    assert "| 50% / 0% |" in full_row
    assert "| (100% / 100%) |" in full_row  # the surrogate judge: bracketed
    assert "CLIP2Protect" in rows and "cannot run here" in rows["CLIP2Protect"]
    # runs not on disk are listed with the command that makes them
    assert "`python experiments/compare_methods.py run facecloak`" in md
    assert "0.6000" in md and "0.5000" in md  # thresholds stated


def test_surrogate_judge_left_out_of_the_plot(run_dir, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    plotted = []
    import matplotlib.axes

    real = matplotlib.axes.Axes.plot

    def spy(self, *args, **kwargs):
        if "label" in kwargs:
            plotted.append(kwargs["label"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    out = tmp_path / "compare"
    compare_methods.render(run_dir, out, unavailable={}, png=True)
    assert out.with_name("compare_psr_lpips.png").stat().st_size > 0
    labels = plotted
    assert labels.count("pgd-default") == 2  # both judges
    assert labels.count("fullres-balanced") == 1  # dlib only: FaceNet-CASIA was its surrogate


def test_runs_of_different_protocols_refused(run_dir, tmp_path):
    data = json.loads((run_dir / "pgd-default.json").read_text())
    data["thresholds"] = {"dlib": 0.55, "facenet_casia": 0.5}
    (run_dir / "pgd-default.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="thresholds"):
        compare_methods.render(run_dir, tmp_path / "x", unavailable={}, png=False)


def test_clip2protect_reason_names_missing_weights():
    pytest.importorskip("jaxprotect.methods.clip2protect.checkpoints")
    rows = compare_methods.unavailable_methods()
    assert "CLIP2Protect" in rows and rows["CLIP2Protect"]
