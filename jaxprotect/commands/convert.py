"""``jaxprotect convert KIND IN OUT``: read an original checkpoint once, cache its params flat."""
from __future__ import annotations

import os


def add_arguments(parser):
    from jaxprotect.registry import NETWORK_NAMES

    parser.add_argument("kind", choices=NETWORK_NAMES, help="which network the checkpoint holds")
    parser.add_argument("source", help="the original checkpoint (.pt/.pth/TorchScript/TF graph as the network takes)")
    parser.add_argument("output", help="where to write the converted params (.npz or .safetensors)")


def run(args) -> int:
    from jaxprotect.checkpoints.state_dict import CACHE_SUFFIXES, flatten, save_flat
    from jaxprotect.registry import load_network

    if not args.output.endswith(CACHE_SUFFIXES):
        print(f"error: OUT must end in {' or '.join(CACHE_SUFFIXES)}: {args.output}")
        return 2
    if os.path.abspath(args.output) == os.path.abspath(args.source):
        print("error: OUT must differ from IN (inputs are never overwritten)")
        return 2
    net = load_network(args.kind, args.source)
    flat = flatten(net.params)
    save_flat(args.output, flat)
    print(f"{args.kind}: {len(flat)} arrays from {args.source} -> {args.output}")
    return 0
