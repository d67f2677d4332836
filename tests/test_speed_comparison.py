"""experiments/speed_comparison.py: the jaxprotect side of every stage at --quick sizes (no upstream
checkout here, so the original side is skipped with a message), the report, and the --device plan."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import speed_comparison as sc  # noqa: E402


def test_quick_run_times_every_stage_of_jaxprotect(tmp_path):
    out = tmp_path / "speed"
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "speed_comparison.py"), "--quick", "--runs", "1",
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    data = json.loads(out.with_suffix(".json").read_text())
    assert [r["stage"] for r in data["rows"]] == list(sc.STAGES)
    for row in data["rows"]:
        j = row["jaxprotect"]
        assert "error" not in j, (row["stage"], j.get("error"))
        assert j["wall_median"] > 0 and j["cpu_median"] > 0 and j["vmhwm_kib"] > 0
        assert len(j["wall_s"]) == 1 and j["allocator"].startswith("jemalloc")
        assert row["original"]["skipped"].startswith("no ")
    text = out.with_suffix(".md").read_text()
    assert "no --clip2protect checkout given" in text and "no --tipim checkout given" in text
    assert out.with_suffix(".png").stat().st_size > 1000


def test_device_mode_plan_and_budget(tmp_path):
    args = sc.parse_args(["--device", "cuda"])
    assert args.batches == [1, 8, 32] and args.budget_s == 540 and args.out.endswith("speed_comparison_cuda")
    plan = sc._plan(args)
    assert ("mtcnn", 1) in plan and ("mtcnn", 8) not in plan and ("search_step", 32) in plan
    assert sc._env("jaxprotect", args)["JAX_PLATFORMS"] == "cuda"
    assert sc._env("jaxprotect", args)["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    # a spent budget skips rows (and still writes the report): the same driver path on the CPU
    args = sc.parse_args(["--device", "cpu", "--quick", "--batches", "1,2", "--budget-s", "0", "--no-plot",
                          "--stages", "finetune_step,mtcnn", "--out", str(tmp_path / "s")])
    data = sc.run_all(args)
    assert [(r["stage"], r["batch"]) for r in data["rows"]] == [("finetune_step", 1), ("finetune_step", 2), ("mtcnn", 1)]
    assert all("budget" in r["skipped"] for r in data["rows"])
    assert "time budget" in (tmp_path / "s.md").read_text()
    with pytest.raises(SystemExit):
        sc.parse_args(["--stages", "nope"])


def _side(wall, cpu, kib, batch=1):
    return {"wall_median": wall, "wall_min": wall, "wall_max": wall, "cpu_median": cpu, "vmhwm_kib": kib,
            "batch": batch, "load1": [1.0, 1.2], "allocator": "jemalloc", "what": "x", "first_call": [1.0, 1.0]}


def test_ratios_pipeline_and_targets_in_the_report():
    gib = 2**20
    rows = [
        {"stage": "finetune_step", "batch": 1, "original": _side(6.0, 12.0, 8 * gib), "jaxprotect": _side(2.0, 4.0, 3 * gib)},
        {"stage": "search_step", "batch": 1, "original": _side(15.0, 30.0, 11 * gib), "jaxprotect": _side(2.5, 5.0, 5 * gib)},
        {"stage": "search_step", "batch": 4, "original": _side(15.0, 30.0, 11 * gib),
         "jaxprotect": _side(8.0, 16.0, 6 * gib, batch=4)},
    ]
    assert sc.ratios(rows[0]) == pytest.approx({"wall": 3.0, "cpu": 3.0, "memory": 3 / 8})
    assert sc.ratios(rows[2])["wall"] == pytest.approx(15.0 / 2.0)  # per photo: 8 s for 4 photos
    pipe = sc.pipeline_estimate(rows)
    assert pipe["original_wall_s"] == pytest.approx(150 * 6 + 50 * 15)
    assert pipe["jaxprotect_wall_s"] == pytest.approx(150 * 2 + 50 * 2.5)
    data = {"meta": {"quick": False, "device": "cpu", "machine": "m", "cpus": 2, "when": "t", "python": "3", "runs": 1,
                     "rounds": 1, "load_at_start": [1.0], "load_at_end": [1.0], "upstream": {"clip2protect": "c",
                     "tipim": None}, "patches": ["p1"]}, "rows": rows}
    text = sc.markdown(data)
    assert "| CLIP2Protect fine-tuning step >= 2.5x | 3.00x wall (3.00x CPU) | yes |" in text
    assert "CLIP2Protect search step >= 5.0x | 6.00x wall" in text
    assert "- p1" in text and "3.88x wall" in text  # pipeline: 1650 s / 425 s


def test_env_ab_parses_variants_and_pools_the_rounds():
    import speed_env_ab as ab

    assert ab.parse_variant("base=") == ("base", {})
    assert ab.parse_variant("x=XLA_FLAGS=--a=b,c;MALLOC_CONF=dirty_decay_ms:-1") == (
        "x", {"XLA_FLAGS": "--a=b,c", "MALLOC_CONF": "dirty_decay_ms:-1"})
    rec = lambda walls, peak, steal: {"wall_s": walls, "cpu_s": [2 * w for w in walls], "vmhwm_kib": peak,  # noqa: E731
                                      "load1_start": 1.0, "steal_pct": steal}
    data = {"when": "now", "rounds": 2, "runs": 2, "variants": [{"label": "a", "env": {}}],
            "rows": [{"stage": "finetune_step", "variant": "a",
                      "results": [rec([1.0, 3.0], 2**20, 12.4), rec([2.0, 5.0], 2 * 2**20, None)]}]}
    line = next(ln for ln in ab.markdown(data).splitlines() if ln.startswith("| finetune_step"))
    # median of the 4 pooled calls, min-max, CPU median, the larger peak in GiB, the larger stolen share
    assert line == "| finetune_step | a | 2.500 (1.000-5.000) | 5.00 | 2.00 | 1.0-1.0 | 12 |"


def test_stolen_cpu_share():
    import speed_common

    rows = [{"original": {"steal_pct": 10.0, "wall_s": [0.1, 0.1]}, "jaxprotect": {"steal_pct": 0.0, "wall_s": [1.8]}},
            {"original": {"wall_s": [5.0]}, "jaxprotect": {"skipped": "x"}}]
    assert sc.stolen_share(rows) == pytest.approx(10.0 * 0.2 / 2.0)
    assert sc.stolen_share([{"original": {"wall_s": [1.0]}}]) is None

    assert speed_common.steal_percent((10, 1000), (60, 2000)) == pytest.approx(5.0)
    assert speed_common.steal_percent(None, (60, 2000)) is None
    assert speed_common.steal_percent((10, 1000), (10, 1000)) is None
    now = speed_common.cpu_counters()
    assert now is None or (0 <= now[0] <= now[1])


def test_extra_env_is_set_last_in_the_worker_environment():
    args = sc.parse_args(["--allocator", "glibc", "--stages", "mtcnn"])
    env = sc._env("jaxprotect", args, {"MALLOC_CONF": "dirty_decay_ms:0", "JAX_PLATFORMS": "cpu,x"})
    assert env["MALLOC_CONF"] == "dirty_decay_ms:0" and env["JAX_PLATFORMS"] == "cpu,x"
    jemalloc = sc.parse_args(["--allocator", "jemalloc", "--stages", "mtcnn"])
    if __import__("os").path.exists(sc.JEMALLOC):  # the allocator's own setting gives way to the extra one
        assert sc._env("jaxprotect", jemalloc, {"MALLOC_CONF": "x"})["MALLOC_CONF"] == "x"
