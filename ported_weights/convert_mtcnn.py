"""Convert facenet-pytorch's MTCNN weights (``pnet.pt``, ``rnet.pt``, ``onet.pt``) into ``mtcnn.npz``.

Usage (re-runnable; writes ``mtcnn.npz`` next to this script):

    python ported_weights/convert_mtcnn.py [--source-dir DIR] [--out FILE]

``DIR`` holds ``mtcnn_{pnet,rnet,onet}.pt`` (default ``../shared/assets/weights``) or, as in the
PyPI ``facenet-pytorch`` 2.6.0 wheel's ``facenet_pytorch/data/``, ``{pnet,rnet,onet}.pt``. The
originals' sha256 are checked first; they are read without torch and without running pickled
code, checked key by key against the networks, and written unchanged as float32 under the keys
``pnet.conv1.weight`` ... (the layout ``jaxprotect convert mtcnn`` also writes).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ported_weights import sha256_file

HERE = Path(__file__).resolve().parent
SHA256 = {
    "pnet": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}




def check_sources(source_dir: Path) -> dict[str, Path]:
    """The three original files in ``source_dir``, after checking their sha256."""
    found = {}
    for net, digest in SHA256.items():
        candidates = [source_dir / f"mtcnn_{net}.pt", source_dir / f"{net}.pt"]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            raise FileNotFoundError(f"no mtcnn_{net}.pt or {net}.pt in {source_dir}")
        got = sha256_file(path)
        if got != digest:
            raise ValueError(f"{path}: sha256 {got} is not facenet-pytorch 2.6.0 data/{net}.pt ({digest})")
        found[net] = path
    return found


def convert(source_dir: Path, out: Path) -> Path:
    """Check, convert and write ``out``; returns it."""
    from jaxprotect.checkpoints.state_dict import flatten, load_state_dict, save_flat
    from jaxprotect.detect.mtcnn import mtcnn_params

    sources = check_sources(source_dir)
    mapping = {f"{net}.{k}": v for net, p in sources.items() for k, v in load_state_dict(p).items()}
    save_flat(out, flatten(mtcnn_params(mapping)))
    for net, p in sources.items():
        print(f"{p} (sha256 {SHA256[net]})")
    print(f"-> {out} (sha256 {sha256_file(out)})")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", type=Path, default=HERE.parent.parent / "shared" / "assets" / "weights")
    parser.add_argument("--out", type=Path, default=HERE / "mtcnn.npz")
    args = parser.parse_args(argv)
    convert(args.source_dir, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
