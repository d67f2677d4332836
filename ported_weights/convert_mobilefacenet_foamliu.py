"""Re-create ``mobilefacenet_foamliu.npz`` from foamliu/MobileFaceNet's ``weights/mobilefacenet.pt``.

    python ported_weights/convert_mobilefacenet_foamliu.py [path/to/mobilefacenet.pt] [out.npz]

Reads the torch state dict with jaxprotect's safe reader (no torch, no pickled code run), checks
that its sha256 is the one this folder was made from and that its keys are exactly the model's,
drops the integer ``num_batches_tracked`` counters and writes the float32 tensors unchanged as a
flat ``.npz`` keyed by the original state-dict names. Format change only.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ported_weights import sha256_file

import numpy as np

SOURCE_SHA256 = "90a00ba1d8b0b688af3deb731ed53dca582e6106805d1bc3cfdef55f570493f4"
HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "assets" / "weights" / "mobilefacenet_foamliu.pt"
DEFAULT_OUTPUT = HERE / "mobilefacenet_foamliu.npz"




def convert(source: Path, output: Path, *, check_sha: bool = True) -> dict[str, np.ndarray]:
    """Convert ``source`` (.pt) to ``output`` (.npz); returns the arrays written."""
    from jaxprotect.checkpoints.state_dict import check_keys, load_state_dict, save_flat
    from jaxprotect.models.mobilefacenet_foamliu import foamliu_param_shapes

    digest = sha256_file(source)
    if check_sha and digest != SOURCE_SHA256:
        raise ValueError(f"{source}: sha256 {digest} is not foamliu's mobilefacenet.pt ({SOURCE_SHA256})")
    raw = load_state_dict(source)
    if any(raw[k].dtype != np.float32 for k in raw if not k.endswith("num_batches_tracked")):
        raise ValueError(f"{source}: expected float32 tensors")
    flat = check_keys(raw, foamliu_param_shapes(), what=f"foamliu MobileFaceNet checkpoint {source}")
    save_flat(output, flat)
    return flat


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    flat = convert(args.source, args.output)
    print(f"{len(flat)} arrays, {sum(v.size for v in flat.values())} values: {args.source} -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
