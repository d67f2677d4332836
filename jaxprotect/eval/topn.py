"""FaceCloak's identification score (``Cloaker.eval_on_all_models`` with ``get_closest``).

For a (cloaked) probe, the gallery is ranked by closeness and the ``n + C - 1`` best entries other
than the probe's own file are walked in order (``C`` = same-identity gallery images per identity:
4 in the code's datasets, 1 for its CelebA verification sets): each same-identity entry adds
``1/C``; each other identity uses up one of ``n - 1`` allowed misses, and the walk stops at the
miss after the last allowed one. Top-1 (``n = 1``) stops at the first miss; top-5 tolerates four.
The score lies in [0, 1] (1 = every same-identity image ranked before the n-th miss); accuracy is
the mean score over probes and the protection success rate is ``PSR = 1 - accuracy``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["top_n_score", "ranked_gallery", "identification_score", "protection_success_rate"]


def top_n_score(same_identity: Sequence[bool], n: int, comparisons: int) -> float:
    """The walk of ``eval_on_all_models`` over a ranked list of same-identity flags (best match first)."""
    if n < 1 or comparisons < 1:
        raise ValueError("n and comparisons must be >= 1")
    score, misses = 0.0, n - 1
    for same in same_identity:
        if same:
            score += 1.0 / comparisons
        else:
            if misses <= 0:
                break
            misses -= 1
    return score


def ranked_gallery(scores, count: int, higher_is_closer: bool = True, exclude=None) -> np.ndarray:
    """Gallery indices of the ``count`` closest entries, closest first, skipping index ``exclude`` (``no_self``).

    ``scores`` [G]: similarities (``higher_is_closer``) or distances. The code's cosine distance
    is ``-cos``, so similarities ranked descending equal its ascending distances.
    """
    s = np.asarray(scores, np.float64)
    order = np.argsort(-s if higher_is_closer else s, kind="stable")
    if exclude is not None:
        order = order[order != exclude]
    return order[:count]


def identification_score(scores, gallery_ids, probe_id, n: int, comparisons: int, *, higher_is_closer: bool = True,
                         exclude=None) -> float:
    """Top-``n`` score of one probe: rank the gallery, keep ``n + C - 1`` entries, walk them (:func:`top_n_score`).

    ``scores`` [G] probe-vs-gallery scores; ``gallery_ids`` [G] identity labels; ``probe_id`` the
    probe's identity; ``comparisons`` = C; ``exclude`` the probe's own gallery index, if any.
    """
    idx = ranked_gallery(scores, n + comparisons - 1, higher_is_closer, exclude)
    ids = np.asarray(gallery_ids)
    return top_n_score([ids[i] == probe_id for i in idx], n, comparisons)


def protection_success_rate(per_probe_scores) -> float:
    """``1 - mean(score)`` over probes (the code prints it as "PSR")."""
    s = np.asarray(per_probe_scores, np.float64)
    if s.size == 0:
        raise ValueError("no probe scores")
    return float(1.0 - s.mean())
