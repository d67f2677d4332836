"""torchvision's ``ops.nms``/``ops.batched_nms`` in plain torch, for running the original code where
torchvision's compiled operators are unavailable (the speed comparison, the detection benchmark and
the FaceCloak golden recorder import it from here)."""
from __future__ import annotations


def nms(boxes, scores, threshold):
    """Indices kept, highest score first; torchvision.ops.nms semantics (areas without +1, a box
    whose IoU with a kept one is > ``threshold`` is suppressed). ``boxes`` [N, 4] x1, y1, x2, y2."""
    import torch

    order = torch.argsort(scores, descending=True, stable=True)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    suppressed = torch.zeros(len(scores), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        w = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1)).clamp(min=0)
        h = (torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1)).clamp(min=0)
        inter = w * h
        suppressed |= inter / (areas[i] + areas - inter) > threshold
    return torch.tensor(keep, dtype=torch.long)


def batched_nms(boxes, scores, idxs, threshold):
    """torchvision.ops.batched_nms: boxes of different ``idxs`` never suppress each other."""
    import torch

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.long)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, threshold)
