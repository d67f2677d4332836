"""Where a CLIP2Protect step's time goes, traced through the pipeline's own compiled program.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
        .venv/bin/python experiments/trace_pipeline_step.py finetune_step /tmp/trace_ft

Builds the stage exactly as ``speed_comparison.py``'s jaxprotect side does (``speed_jaxprotect``:
``runtime.compiled``, donated state, full size, batch 1), times 3 calls after 2 warm-ups, traces 2
more with ``jax.profiler`` and prints the XLA thunk time per call summed by kind: weight-gradient
products (a dot whose output is kernel-sized), other products, convolutions, layout copies, pads and
slices, other fusions. A third argument N also lists the N costliest ops; the compiled HLO is written
beside the trace as ``program.hlo.txt``. The numbers in ``results/finetune_profile.md`` sections 4-5
and ``results/weight_layout.md`` come from this.
"""
from __future__ import annotations

import re
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from profile_finetune import describe_op, kind_of, top_ops  # noqa: E402
from speed_comparison import FULL  # noqa: E402

OPTS = {"device": "cpu", "batch": 1, "runs": 3, "warmup": 1, "clip2protect": None, "tipim": None, "sizes": FULL}


def weight_sources(hlo: str) -> dict[str, str]:
    """{op name: whose weights} for the ops of compiled ``hlo`` that only re-lay out (transpose, and for an
    input gradient reverse) one of the program's weight arguments: ``shared['fr']['ir152']`` -> "fr ir152",
    ``g_params`` -> "g_params"."""
    params = set(re.findall(r"^\s*%([\w.-]+) = \S+ parameter\(", hlo, re.M))
    bodies = {m.group(1): m.group(2) for m in re.finditer(r"^%([\w.-]+) .*?\{(.*?)^\}", hlo, re.M | re.S)}
    out = {}
    for m in re.finditer(r"^\s*(?:ROOT )?%([\w.-]+) = \S+ fusion\(%([\w.-]+)\)[^\n]*calls=%([\w.-]+)", hlo, re.M):
        name, arg, called = m.groups()
        ops = set(re.findall(r"= \S+ ([\w-]+)\(", bodies.get(called, "")))
        if arg not in params or not {"transpose", "copy"} <= ops or ops - {
                "parameter", "transpose", "copy", "bitcast", "reverse", "multiply", "broadcast", "constant"}:
            continue
        parts = [p for p in arg.split("__") if p]
        out[name] = " ".join(parts[1:3]) if parts[0] == "shared" else parts[0]
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    stage, out = argv[0], argv[1]
    top = int(argv[2]) if len(argv) > 2 else 0
    import jax

    import speed_jaxprotect as sj
    from jaxprotect import runtime

    runtime.configure_cpu_dispatch()  # as the jaxprotect command and speed_comparison.py's worker

    call, _ = sj.STAGES[stage](OPTS)
    call()
    call()
    walls = []
    for _ in range(3):
        t = time.perf_counter()
        call()
        walls.append(time.perf_counter() - t)
    print("wall s per call:", [round(w, 3) for w in walls])
    with jax.profiler.trace(out):
        call()
        call()
    hlo = list(runtime._COMPILED.values())[-1].as_text()
    Path(out, "program.hlo.txt").write_text(hlo)
    ops = top_ops(out, None)  # ranked by time
    per_kind = defaultdict(float)
    for name, ms, _ in ops:
        per_kind[kind_of(name, describe_op(hlo, name))] += ms / 2
    for kind, ms in sorted(per_kind.items(), key=lambda kv: -kv[1]):
        print(f"{ms:8.1f} ms/call  {kind}")
    print(f"{sum(per_kind.values()):8.1f} ms/call  summed thunk time")
    relayout, count = defaultdict(float), defaultdict(int)
    sources = weight_sources(hlo)
    for name, ms, _ in ops:
        src = sources.get(name)
        if src is not None:
            relayout[src] += ms / 2
            count[src] += 1
    for src, ms in sorted(relayout.items(), key=lambda kv: -kv[1]):
        print(f"{ms:8.1f} ms/call  re-layout of the {src} weights ({count[src]} ops)")
    for name, ms, n in ops[:top]:
        print(f"{ms / 2:8.1f} ms/call  x{n // 2:<3d} {name}: {describe_op(hlo, name)[:200]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
