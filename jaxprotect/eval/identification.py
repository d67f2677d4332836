"""Identification against a gallery: Rank-k, untargeted and targeted (TIP-IM's protocol).

A probe (a protected photo, or its original for the "before" row) is compared with every gallery
photo; identities are ranked by their BEST score over their gallery photos (nearest neighbour).
Gallery photos that are the probe's own original file are left out (a photo trivially matches
itself).

* Untargeted protection success at rank k (TIP-IM "Rank-k-UT"): the probe's true identity is NOT
  among the k best-ranked identities.
* Targeted success at rank k ("Rank-k-T"): the target identity IS among the k best.
* Before protection, the same ranks on the originals give the gallery's identification accuracy
  (true identity within the top k), which bounds what protection can change.

Probes whose true identity has no photo in the gallery are not counted for untargeted rates (the
report gives how many); probes with no face (NaN scores) count as untargeted successes and targeted
failures.
"""
from __future__ import annotations

import numpy as np

__all__ = ["rank_identities", "identity_rank", "identification_rates"]


def rank_identities(scores, gallery_ids, higher_is_closer: bool) -> list:
    """Gallery identities ordered best first by their best score; ``scores`` [G] for one probe.

    NaN scores (gallery photos with no face, or a probe with no face) never rank; ties keep the
    gallery order.
    """
    s = np.asarray(scores, np.float64)
    best: dict = {}
    for score, ident in zip(s, gallery_ids):
        if not np.isfinite(score):
            continue
        if ident not in best or (score > best[ident] if higher_is_closer else score < best[ident]):
            best[ident] = score
    order = sorted(best, key=lambda k: -best[k] if higher_is_closer else best[k])
    return order


def identity_rank(ranking: list, identity) -> int | None:
    """1-based rank of ``identity`` in ``ranking``, or None when it is absent."""
    return ranking.index(identity) + 1 if identity in ranking else None


def identification_rates(rankings: list, true_ids: list, target_ids: list | None = None, ks=(1, 5),
                         gallery_identities=None) -> dict:
    """Rank-k rates over probes.

    ``rankings``: one ranked identity list per probe (from :func:`rank_identities`); ``true_ids``:
    each probe's identity; ``target_ids``: each probe's target identity or None. Returns
    ``{"untargeted": {k: rate}, "identified": {k: rate}, "targeted": {k: rate} | None, "probes",
    "probes_in_gallery", "targeted_probes", "ranks": [true rank per probe], "target_ranks"}``; a
    rate is None when no probe qualifies.
    """
    gallery = set(gallery_identities) if gallery_identities is not None else None
    true_ranks = [identity_rank(r, t) for r, t in zip(rankings, true_ids)]
    in_gallery = [gallery is None or t in gallery for t in true_ids]
    out = {"probes": len(rankings), "probes_in_gallery": int(sum(in_gallery)), "ranks": true_ranks,
           "untargeted": {}, "identified": {}, "targeted": None, "targeted_probes": 0, "target_ranks": None}
    counted = [r for r, ok in zip(true_ranks, in_gallery) if ok]
    for k in ks:
        hits = [r is not None and r <= k for r in counted]
        out["identified"][k] = float(np.mean(hits)) if counted else None
        out["untargeted"][k] = float(1 - np.mean(hits)) if counted else None
    if target_ids is not None and any(t is not None for t in target_ids):
        target_ranks = [identity_rank(r, t) if t is not None else None for r, t in zip(rankings, target_ids)]
        valid = [r for r, t in zip(target_ranks, target_ids) if t is not None and (gallery is None or t in gallery)]
        out["target_ranks"] = target_ranks
        out["targeted_probes"] = len(valid)
        out["targeted"] = {k: (float(np.mean([r is not None and r <= k for r in valid])) if valid else None)
                           for k in ks}
    return out
