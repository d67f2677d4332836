"""Verification protocols on judge scores: thresholds at a FAR, dodging and impersonation PSR, margins.

Everything here is numpy on scores that a judge already produced; ``higher_is_closer`` says whether
a score is a similarity (match when ``score > threshold``) or a distance (match when ``score <
threshold``), as :func:`jaxprotect.judges.is_match`.

* **Calibrated thresholds** (:func:`calibrate`): on the scores of different-identity pairs of
  UNPROTECTED photos, the threshold at each FAR is :func:`jaxprotect.judges.calibrate_threshold`
  (at most ``floor(far * n)`` negatives accepted); the FAR actually reached and ``n`` are kept,
  because with few pairs the small FARs cannot be resolved (below ``1 / n`` the threshold is the
  largest negative score and the reached FAR is 0).
* **Dodging** (:func:`dodging`): pairs (protected photo, reference photo of the same person). Only
  the pairs the judge matched before protection (original vs reference) count. Success = the judge no
  longer matches the protected photo with the reference; a protected photo in which the judge finds
  no face counts as a success and is also counted separately (``no_face_after``).
* **Impersonation** (:func:`impersonation`): pairs (protected photo, target photo). Success = the
  judge matches them (AMT-GAN / CLIP2Protect: ``cos > threshold``); no face = failure. Reported over
  all pairs, beside the rate at which the ORIGINAL already matched the target (should be ~FAR).
* **Margin**: how far the protected score lies beyond the threshold in the protection's direction
  (dodging: ``threshold - score`` for similarities, ``score - threshold`` for distances; impersonation
  the opposite), so a positive margin is a success and its distribution shows how robust it is.
"""
from __future__ import annotations

import numpy as np

from jaxprotect.face_conventions import calibrate_threshold, false_accept_rate

__all__ = ["calibrate", "negative_scores", "matches", "dodging", "impersonation", "summarize", "QUANTILES"]

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def matches(scores, threshold: float, higher_is_closer: bool) -> np.ndarray:
    """Boolean match decisions for an array of scores (NaN = no face = no match)."""
    s = np.asarray(scores, np.float64)
    with np.errstate(invalid="ignore"):
        return (s > threshold) if higher_is_closer else (s < threshold)


def negative_scores(score_matrix: np.ndarray, identities) -> np.ndarray:
    """Scores of every unordered pair (i < j) whose identities differ; NaN scores (no face) dropped.

    ``score_matrix``: [n, n] pairwise scores of n unprotected photos; ``identities``: n labels.
    """
    ids = np.asarray(identities)
    i, j = np.triu_indices(len(ids), k=1)
    keep = ids[i] != ids[j]
    s = np.asarray(score_matrix, np.float64)[i[keep], j[keep]]
    return s[np.isfinite(s)]


def calibrate(negatives, fars, higher_is_closer: bool) -> dict:
    """``{far: {"threshold", "far_reached", "negatives"}}`` from different-identity scores."""
    neg = np.asarray(negatives, np.float64)
    out = {}
    for far in fars:
        if neg.size == 0:
            out[far] = {"threshold": None, "far_reached": None, "negatives": 0}
            continue
        thr = calibrate_threshold(neg, far, higher_is_closer)
        out[far] = {"threshold": thr, "far_reached": false_accept_rate(neg, thr, higher_is_closer),
                    "negatives": int(neg.size)}
    return out


def summarize(values) -> dict | None:
    """Mean and quantiles (0, 10, 25, 50, 75, 90, 100 %) of finite values; None when there are none."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if v.size == 0:
        return None
    return {"n": int(v.size), "mean": float(v.mean()),
            **{f"q{int(q * 100)}": float(np.quantile(v, q)) for q in QUANTILES}}


def _margin(scores, threshold, higher_is_closer, sign):
    s = np.asarray(scores, np.float64)
    return sign * ((threshold - s) if higher_is_closer else (s - threshold))


def dodging(before, after, threshold: float, higher_is_closer: bool) -> dict:
    """Dodging PSR over pairs matched before protection.

    ``before``: scores original vs reference; ``after``: protected vs reference (NaN where the judge
    found no face in the protected photo). Returns ``{"psr", "pairs", "matched_before", "successes",
    "no_face_after", "margins" (per counted pair, NaN for no face), "margin" (summary)}``.
    """
    before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
    counted = matches(before, threshold, higher_is_closer)
    a = after[counted]
    no_face = ~np.isfinite(a)
    success = no_face | ~matches(a, threshold, higher_is_closer)
    margins = _margin(a, threshold, higher_is_closer, +1)
    n = int(counted.sum())
    return {"psr": float(success.mean()) if n else None, "pairs": int(before.size), "matched_before": n,
            "successes": int(success.sum()), "no_face_after": int(no_face.sum()),
            "margins": margins.tolist(), "margin": summarize(margins)}


def impersonation(before, after, threshold: float, higher_is_closer: bool) -> dict:
    """Impersonation success rate over all pairs.

    ``before``: scores original vs target; ``after``: protected vs target (NaN = no face = failure).
    Returns ``{"psr", "pairs", "successes", "no_face_after" (pairs without a score: no face in the
    protected photo or in the target), "matched_before_rate", "margins", "margin"}``.
    """
    before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
    n = int(after.size)
    success = matches(after, threshold, higher_is_closer)
    margins = _margin(after, threshold, higher_is_closer, -1)
    return {"psr": float(success.mean()) if n else None, "pairs": n, "successes": int(success.sum()),
            "no_face_after": int((~np.isfinite(after)).sum()),
            "matched_before_rate": float(matches(before, threshold, higher_is_closer).mean()) if n else None,
            "margins": margins.tolist(), "margin": summarize(margins)}
