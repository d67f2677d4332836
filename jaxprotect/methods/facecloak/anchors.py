"""Near and far anchors (``Cloaker.get_closest`` / ``get_farthest`` / ``cloak_all_multi``).

Embeddings are L2-normalised [D] (probe) and [G, D] (gallery); distances are the code's cosine
distance ``-cos`` (``dist_functions.cosine_dist``).

* near anchor = the gallery image most similar to the real probe (``get_closest(probe)[0][0]``;
  the probe itself is not excluded, and upstream's gallery usually holds other photos of the
  same person, so this is normally the person's own identity);
* far anchor = the least similar gallery image (``get_farthest``), **but** ``cloak_all_multi``
  overwrites it on the next line with one hard-coded file
  (``data/celeba_verify/group2_gallery/200502_0.jpg``): in the released code every identity is
  pushed towards the same image. :func:`far_anchor` takes that fixed choice as ``override``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["cosine_distances", "closest", "farthest", "far_anchor"]


def cosine_distances(probe, gallery) -> np.ndarray:
    """``cosine_dist(gallery, probe)``: ``-(ĝ·p̂)`` for each gallery row -> [G] (float32)."""
    p = np.asarray(probe, np.float32).reshape(-1)
    g = np.asarray(gallery, np.float32)
    p = p / max(float(np.linalg.norm(p)), 1e-12)
    g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    return -(g @ p)


def closest(probe, gallery, n: int = 1, exclude=None) -> np.ndarray:
    """Indices of the ``n`` most similar gallery rows, most similar first (``get_closest``).

    ``exclude``: a gallery index to skip (``no_self=True``: the probe's own file).
    """
    order = np.argsort(cosine_distances(probe, gallery), kind="stable")
    if exclude is not None:
        order = order[order != exclude]
    return order[:n]


def farthest(probe, gallery) -> int:
    """Index of the least similar gallery row (``get_farthest``: sort descending, take the first)."""
    return int(np.argsort(-cosine_distances(probe, gallery), kind="stable")[0])


def far_anchor(probe, gallery, rule: str = "farthest", override: int | None = None) -> int:
    """The far anchor's gallery index: ``override`` when ``rule == "fixed"``, else :func:`farthest`.

    ``rule="fixed"`` without ``override`` raises ``ValueError`` (the fixed image must be named).
    """
    if rule == "fixed":
        if override is None:
            raise ValueError("far anchor rule 'fixed' needs the index of the fixed gallery image (override)")
        return int(override)
    if rule != "farthest":
        raise ValueError(f"far anchor rule must be 'fixed' or 'farthest', not {rule!r}")
    return farthest(probe, gallery)
