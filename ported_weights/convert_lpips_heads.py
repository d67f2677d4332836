"""Convert lpips' v0.1 linear heads (``lpips/weights/v0.1/{vgg,alex}.pth``) into the shipped npz files.

Usage (re-runnable; writes ``lpips_v0.1_{vgg,alex}.npz`` next to this script):

    python ported_weights/convert_lpips_heads.py [--source-dir DIR] [--out-dir DIR]

``DIR`` holds ``lpips_v0.1_vgg.pth`` and ``lpips_v0.1_alex.pth`` (default ``../shared/assets/weights``;
the same files are ``vgg.pth``/``alex.pth`` in the PyPI ``lpips`` 0.1.4 wheel, which are accepted too).
The originals' sha256 are checked first; the output keys are lpips' own ``lin{k}.model.1.weight``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ported_weights import sha256_file

HERE = Path(__file__).resolve().parent
SHA256 = {
    "vgg": "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    "alex": "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
}




def find_source(source_dir: Path, arch: str) -> Path:
    """``lpips_v0.1_{arch}.pth`` (assets naming) or ``{arch}.pth`` (lpips wheel naming) in ``source_dir``."""
    for name in (f"lpips_v0.1_{arch}.pth", f"{arch}.pth"):
        if (source_dir / name).exists():
            return source_dir / name
    raise FileNotFoundError(f"no lpips_v0.1_{arch}.pth or {arch}.pth in {source_dir}")


def convert(source_dir: Path, out_dir: Path) -> list[Path]:
    """Check and convert both head files; returns the written paths."""
    from jaxprotect.checkpoints.state_dict import save_flat
    from jaxprotect.models.lpips import lpips_heads

    written = []
    for arch, digest in SHA256.items():
        src = find_source(source_dir, arch)
        got = sha256_file(src)
        if got != digest:
            raise ValueError(f"{src}: sha256 {got} is not lpips v0.1 {arch}.pth ({digest})")
        out = out_dir / f"lpips_v0.1_{arch}.npz"
        save_flat(out, lpips_heads(arch, src))
        print(f"{src} -> {out} (sha256 {sha256_file(out)})")
        written.append(out)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", type=Path, default=HERE.parent.parent / "shared" / "assets" / "weights")
    parser.add_argument("--out-dir", type=Path, default=HERE)
    args = parser.parse_args(argv)
    convert(args.source_dir, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
