"""What every judge shares: match decisions and thresholds calibrated at a false-accept rate."""
from __future__ import annotations

import numpy as np

__all__ = ["is_match", "calibrate_threshold", "false_accept_rate"]


def is_match(score: float, threshold: float, higher_is_closer: bool) -> bool:
    """A judge's decision: ``score > threshold`` for similarities, ``score < threshold`` for distances."""
    return bool(score > threshold) if higher_is_closer else bool(score < threshold)


def false_accept_rate(negative_scores, threshold: float, higher_is_closer: bool) -> float:
    """Fraction of different-person pairs that the threshold accepts as the same person."""
    s = np.asarray(negative_scores, np.float64)
    return float(np.mean(s > threshold) if higher_is_closer else np.mean(s < threshold))


def calibrate_threshold(negative_scores, far: float, higher_is_closer: bool) -> float:
    """The strictest-but-one threshold whose false-accept rate on ``negative_scores`` is <= ``far``.

    ``negative_scores``: scores of different-person pairs. For similarities the threshold is the
    ``k``-th largest negative score with ``k = floor(far * n) + 1``, so at most ``floor(far * n)``
    negatives lie strictly above it (mirrored for distances). With few pairs the achievable FAR
    is coarse (261 pairs: steps of 0.38%); :func:`false_accept_rate` gives the one reached.
    """
    s = np.sort(np.asarray(negative_scores, np.float64))
    if s.size == 0:
        raise ValueError("no negative pairs to calibrate on")
    k = int(np.floor(far * s.size))
    return float(s[::-1][k] if higher_is_closer else s[k])
