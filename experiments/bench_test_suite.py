"""How long the README's test command takes, and how much memory: ``.ci/run`` (a fresh virtual
environment, the install, then the default pytest suite) timed from a clean clone.

    python experiments/bench_test_suite.py [--clone-from .] [--workdir DIR]

Clones the repository's HEAD next to it (so ``../shared/golden`` resolves as in CI), runs ``.ci/run``
there, and records wall time, the CPU time of every process it started (user + system), the peak
resident memory of the largest of them (``getrusage(RUSAGE_CHILDREN).ru_maxrss``), pytest's own
summary line and the load average before and after, in experiments/results/test_suite.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clone-from", default=str(ROOT), help="repository to clone (its HEAD)")
    ap.add_argument("--workdir", default=str(ROOT.parent / "jaxprotect-suite-bench"),
                    help="where to clone (next to the repository, so ../shared resolves)")
    ap.add_argument("--out", default=str(HERE / "results" / "test_suite"))
    args = ap.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", args.clone_from, str(work)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=work, capture_output=True, text=True,
                            check=True).stdout.strip()
    load0 = os.getloadavg()
    w0 = time.perf_counter()
    proc = subprocess.run(["bash", ".ci/run"], cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - w0
    load1 = os.getloadavg()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = [line for line in proc.stdout.splitlines() if re.search(r"\d+ passed", line)]
    pytest_s = re.search(r"in ([\d.]+)s", summary[-1]) if summary else None
    data = {
        "commit": commit, "exit_code": proc.returncode, "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
        "pytest_summary": summary[-1] if summary else None,
        "pytest_wall_s": float(pytest_s.group(1)) if pytest_s else None,
        "load_before": [round(v, 2) for v in load0], "load_after": [round(v, 2) for v in load1],
        "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    md = [
        "# The README's test command: time and memory",
        "",
        f"`.ci/run` (fresh virtual environment, `pip install -e .[test]`, the default `pytest` suite) from a clean "
        f"clone of {commit}, by `experiments/bench_test_suite.py` on {data['date']}; {data['cpus']} CPU cores; "
        f"load average (1/5/15 min) before {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}, after "
        f"{load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f}.",
        "",
        "| what | value |",
        "| --- | --- |",
        f"| exit status | {proc.returncode} |",
        f"| pytest | {data['pytest_summary']} |",
        f"| whole command, wall | {wall / 60:.1f} min |",
        f"| CPU time of every process it started (user + system) | {data['cpu_s'] / 60:.1f} min |",
        f"| peak memory of the largest process (max RSS) | {data['peak_rss_gib']:.2f} GiB |",
        "",
        "The install's time depends on the package index's cache; the pytest line gives the suite alone.",
    ]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
