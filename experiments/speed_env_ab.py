"""A/B of process-level settings on jaxprotect's side of ``speed_comparison.py``, in alternation.

    .venv/bin/python experiments/speed_env_ab.py --stages finetune_step --rounds 2 \
        --variant "baseline=" \
        --variant "XLA convolutions=XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_ELTWISE" \
        --variant "jemalloc keeps dirty pages=MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1" \
        --out experiments/results/speed_env_ab.md

Each variant is ``label=VAR=value;VAR=value``, set last in the worker's environment (empty: the
harness's own, jemalloc with its ``MALLOC_CONF``). Every (round, stage, variant) runs the stage's worker in a fresh process,
variants in alternating order, so load drifts hit all of them alike. Records the median, min and max
wall and CPU seconds per call over the rounds, and the process's peak resident memory.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import speed_comparison as sc  # noqa: E402


def parse_variant(text: str) -> tuple[str, dict]:
    """``label=VAR=value;VAR=value`` -> (label, {VAR: value})."""
    label, _, rest = text.partition("=")
    env = {}
    for item in filter(None, rest.split(";")):
        key, _, value = item.partition("=")
        env[key.strip()] = value
    return label.strip(), env


def run(args) -> dict:
    variants = [parse_variant(v) for v in args.variant]
    rows = {(s, label): [] for s in args.stages for label, _ in variants}
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for stage in args.stages:
            for label, env in order:
                res = sc.run_side(stage, "jaxprotect", 1, args, extra_env=env)
                if "error" in res:
                    raise SystemExit(f"{stage} / {label}: {res['error'][-800:]}")
                rows[(stage, label)].append(res)
                print(f"round {r + 1} {stage} {label}: wall {res['wall_median']:.3f} s, cpu {res['cpu_median']:.3f} s, "
                      f"load {res['load1_start']:.2f}, steal {res.get('steal_pct') or 0:.0f}%", flush=True)
    return {"when": time.strftime("%Y-%m-%d %H:%M"), "rounds": args.rounds, "runs": args.runs,
            "variants": [{"label": lab, "env": env} for lab, env in variants],
            "rows": [{"stage": s, "variant": lab, "results": res} for (s, lab), res in rows.items()]}


def markdown(data: dict) -> str:
    lines = [f"# jaxprotect's side under different process settings ({data['when']})", "",
             (f"Each cell: median (min-max) over {data['rounds']} fresh processes x {data['runs']} timed calls, "
              "variants run in alternating order; peak = VmHWM of the process."), "",
             "| stage | variant | wall s | CPU s | peak GiB | load1 | CPU stolen % (max) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in data["rows"]:
        walls = [w for r in row["results"] for w in r["wall_s"]]
        cpus = [c for r in row["results"] for c in r["cpu_s"]]
        peak = max(r["vmhwm_kib"] for r in row["results"]) / 2**20
        loads = [r["load1_start"] for r in row["results"]]
        lines.append(f"| {row['stage']} | {row['variant']} | {statistics.median(walls):.3f} ({min(walls):.3f}-{max(walls):.3f}) "
                     f"| {statistics.median(cpus):.2f} | {peak:.2f} | {min(loads):.1f}-{max(loads):.1f} "
                     f"| {max((r.get('steal_pct') or 0.0) for r in row['results']):.0f} |")
    lines += ["", "Variants:", ""] + [f"- {v['label']}: `{';'.join(f'{k}={x}' for k, x in v['env'].items()) or '(harness default)'}`"
                                      for v in data["variants"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", default="finetune_step")
    ap.add_argument("--variant", action="append", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    ours = ap.parse_args(argv)
    # the harness's own defaults (full sizes, CPU, jemalloc, its timeout) for what run_side reads
    args = sc.parse_args(["--stages", ours.stages, "--runs", str(ours.runs), "--rounds", str(ours.rounds)])
    args.variant, args.out = ours.variant, ours.out
    data = run(args)
    text = markdown(data)
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
