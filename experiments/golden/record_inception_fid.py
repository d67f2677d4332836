"""Record tests/golden/inception_fid.npz from pytorch-fid's own FID InceptionV3 on rule weights.

The upstream code is imported from checkouts given on the command line, never copied here:

    python experiments/golden/record_inception_fid.py \\
        --pytorch-fid /work/upstream/fid_dl/src     # holds pytorch_fid/ (PyPI pytorch-fid 0.3.0 wheel, unpacked)
        --torchvision /work/upstream/tv_dl/tv       # holds torchvision/ (PyPI torchvision 0.28.0 wheel, unpacked)
        --weight-rule /work/shared/golden/weights.py
        [--out tests/golden/inception_fid.npz]

torchvision 0.28.0 pairs with the torch 2.13.0 of the project's venv. The PyPI wheel's compiled
ops (``torchvision/_C.so``) link CUDA and do not load on this CPU-only torch, and
``torchvision/_meta_registrations.py`` then fails registering fake kernels for them (nms,
roi_align, ...); Inception uses none of them, so with ``--stub-meta-registrations`` (default on)
that one module is replaced by an empty one before ``import torchvision``. Nothing else is patched.

What runs is pytorch-fid's code: ``pytorch_fid.inception.InceptionV3(output_blocks=[0, 1, 2, 3],
resize_input=True, normalize_input=True, use_fid_inception=True)``. Its ``fid_inception_v3()``
builds torchvision's ``Inception3(num_classes=1008, aux_logits=False, init_weights=False)``, swaps in
the FIDInception blocks, and loads ``load_state_dict_from_url(FID_WEIGHTS_URL)`` strictly; here that
download function is replaced by one returning the rule weights (the only substitution).

Weights: the golden weight rule (``weights.py`` ``make_weights``, profile "generic", seed 299) over the
full ``Inception3`` state dict in its own key order (``num_batches_tracked`` skipped, ``fc.*`` drawn
last). Inputs: a batch of 2 images (3, 64, 64) in [0, 1] (seed 1299: 4 random 2-D sinusoids per
channel + 0.15 uniform noise through tanh, then (x + 1) / 2), which the model resizes to 299.
Outputs (float32 model; ``*_f64``: the same weights and inputs after ``.double()``):
``pool3`` (2, 2048); for blocks 0-2 the channel means ``block{k}_mean`` (2, C) and a 4x4 crop
``block{k}_crop`` (2, C, 4, 4) at rows/cols 8:12; per Mixed block the channel means
``mixed_<name>_mean``; the resized, normalised input ``input299_crop`` (2, 3, 8, 8) at 100:108.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np

SEED = 299
CROP = slice(8, 12)
# pytorch-fid InceptionV3.blocks[2] and [3], in order (the Inception3 attributes they are)
MIXED_2 = ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")
MIXED_3 = ("Mixed_7a", "Mixed_7b", "Mixed_7c")


def _import_upstream(args):
    sys.path[:0] = [str(Path(args.torchvision).resolve()), str(Path(args.pytorch_fid).resolve())]
    if args.stub_meta_registrations:
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    import torch
    import torchvision
    from pytorch_fid import inception

    for module, root in ((torchvision, args.torchvision), (inception, args.pytorch_fid)):
        assert Path(module.__file__).resolve().is_relative_to(Path(root).resolve()), module.__file__
    return torch, torchvision, inception


def _rule(path: str):
    spec = importlib.util.spec_from_file_location("golden_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_images(seed: int, n: int, size: int) -> np.ndarray:
    """(n, 3, size, size) float32 in [0, 1]: sum of 4 random 2-D sinusoids per channel + noise, tanh, rescaled."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    out = np.zeros((n, 3, size, size))
    for i in range(n):
        for c in range(3):
            for _ in range(4):
                fx, fy, phase = rng.uniform(0.5, 6.0), rng.uniform(0.5, 6.0), rng.uniform(0, 2 * np.pi)
                out[i, c] += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)
            out[i, c] += 0.15 * rng.uniform(-1, 1, (size, size))
    return ((np.tanh(out) + 1) / 2).astype(np.float32)


def run_model(torch, model, images, dtype):
    """pool3, per-block outputs and Mixed-block channel means of ``model`` on ``images`` (NCHW, [0, 1])."""
    mixed = {}
    hooks = []
    for k, name in enumerate(MIXED_2):
        hooks.append(model.blocks[2][k].register_forward_hook(
            lambda m, i, o, key=name: mixed.__setitem__(key, o.mean(dim=(2, 3)).detach().numpy())))
    for k, name in enumerate(MIXED_3):
        hooks.append(model.blocks[3][k].register_forward_hook(
            lambda m, i, o, key=name: mixed.__setitem__(key, o.mean(dim=(2, 3)).detach().numpy())))
    model = model.to(dtype)
    with torch.no_grad():
        x = torch.from_numpy(images).to(dtype)
        blocks = model(x)
        resized = 2 * torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
    for h in hooks:
        h.remove()
    out = {"pool3": blocks[3][:, :, 0, 0].numpy(), "input299_crop": resized[:, :, 100:108, 100:108].numpy()}
    for k in range(3):
        out[f"block{k}_mean"] = blocks[k].mean(dim=(2, 3)).numpy()
        out[f"block{k}_crop"] = blocks[k][:, :, CROP, CROP].numpy()
    return out, mixed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pytorch-fid", required=True, help="folder that holds the pytorch_fid package")
    parser.add_argument("--torchvision", required=True, help="folder that holds the torchvision package")
    parser.add_argument("--weight-rule", required=True, help="the golden weights.py")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "tests/golden/inception_fid.npz"))
    parser.add_argument("--no-stub-meta-registrations", dest="stub_meta_registrations", action="store_false")
    args = parser.parse_args(argv)

    torch, torchvision, inception = _import_upstream(args)
    rule = _rule(args.weight_rule)
    torch.set_num_threads(2)

    # key order and shapes of the model fid_inception_v3() builds (before its weights load)
    probe = inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    entries = [(k, tuple(v.shape)) for k, v in probe.state_dict().items()]
    del probe
    weights, rules = rule.make_weights(entries, SEED, "generic")
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    for k, _ in entries:
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(0)
    calls = []

    def rule_state_dict(url, progress=True):
        calls.append(url)
        return dict(state)

    inception.load_state_dict_from_url = rule_state_dict
    model = inception.InceptionV3(output_blocks=[0, 1, 2, 3], resize_input=True, normalize_input=True,
                                  use_fid_inception=True).eval()
    assert calls == [inception.FID_WEIGHTS_URL], calls
    for k, name in enumerate(MIXED_2):
        assert model.blocks[2][k] is getattr(model.blocks[2], str(k)) and type(model.blocks[2][k]).__name__ in (
            "FIDInceptionA", "InceptionB", "FIDInceptionC"), name
    images = make_images(1000 + SEED, 2, 64)
    out32, mixed32 = run_model(torch, model, images, torch.float32)
    out64, mixed64 = run_model(torch, model, images, torch.float64)

    report = {f"{k}_f32_vs_f64_maxdiff": float(np.abs(out32[k] - out64[k]).max()) for k in out32}
    report.update({f"mixed_{k}_f32_vs_f64_maxdiff": float(np.abs(mixed32[k] - mixed64[k]).max()) for k in mixed32})
    p = out32["pool3"]
    report["pool3_batch_item_diff_std_over_std"] = float(np.std(p[0] - p[1]) / np.std(p))
    report["pool3_std"] = float(np.std(p))
    report["versions"] = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                          "pytorch_fid": getattr(sys.modules.get("pytorch_fid"), "__version__", "?")}

    arrays = {
        "keys": np.array([k for k, _ in entries]),
        "shapes": np.array([",".join(str(s) for s in shape) for _, shape in entries]),
        "rules": np.array(rules),
        "prelu_keys": np.array([], dtype=str),
        "seed": np.int64(SEED),
        "profile": np.array("generic"),
        "images": images,
        "tolerance_report": np.array(json.dumps(report, indent=1)),
    }
    for k, v in out32.items():
        arrays[k] = v.astype(np.float32)
        arrays[f"{k}_f64"] = out64[k].astype(np.float32)
    for k, v in mixed32.items():
        arrays[f"mixed_{k}_mean"] = v.astype(np.float32)
        arrays[f"mixed_{k}_mean_f64"] = mixed64[k].astype(np.float32)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(json.dumps(report, indent=1))
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
