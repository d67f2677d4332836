"""Which detected face a judge compares when it is asked about one face of a group photo."""
from __future__ import annotations

import numpy as np

__all__ = ["nearest_inside"]


def nearest_inside(candidates, box) -> int | None:
    """Index of the candidate box (x1, y1, x2, y2) whose centre lies inside ``box`` and nearest its
    centre, or None: a judge's own detection that stands for the face at ``box``."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    best, best_d = None, np.inf
    for i, c in enumerate(candidates):
        mx, my = (float(c[0]) + float(c[2])) / 2, (float(c[1]) + float(c[3])) / 2
        if not (x1 <= mx <= x2 and y1 <= my <= y2):
            continue
        d = (mx - cx) ** 2 + (my - cy) ** 2
        if d < best_d:
            best, best_d = i, d
    return best
