"""FaceCloak's losses on embeddings (``src/loss_functions.py`` with ``src/dist_functions.py``).

Embeddings reach the losses already L2-normalised (``out_emb / torch.norm(out_emb)`` in every
cloak function); ``cosine_dist`` normalises both sides again (``F.normalize``, norm floored at
1e-12) and returns ``-cos``: smaller = closer. All functions take [D] or [N, D] arrays and
return [N] (or a scalar for [D]); the anchors are [D].

* ``triplet = d(x, far) - d(x, near) = cos(x, near) - cos(x, far)`` (minimised: away from the
  person's own identity, towards a distant one; the default).
* ``fawkes = d(x, far)`` (towards the far anchor only).
* ``untarget = -d(x, anchor)`` (away from the anchor only).
"""
from __future__ import annotations

import jax.numpy as jnp

__all__ = ["normalize", "f_normalize", "cosine_dist", "triplet_loss", "fawkes_loss", "untarget_loss", "LOSS_FUNCTIONS",
           "surrogate_loss"]


def normalize(embedding):
    """``e / torch.norm(e, p=2, dim=1, keepdim=True)`` along the last axis (no floor, as the code)."""
    return embedding / jnp.linalg.norm(embedding, axis=-1, keepdims=True)


def f_normalize(embedding):
    """``F.normalize(e, dim=1)``: ``e / max(‖e‖, 1e-12)`` along the last axis."""
    return embedding / jnp.maximum(jnp.linalg.norm(embedding, axis=-1, keepdims=True), 1e-12)


def cosine_dist(embedding, anchor):
    """``dist_functions.cosine_dist``: ``-(F.normalize(e)·F.normalize(a))`` ([N, D] or [D] with [D] -> [N] or [])."""
    return -jnp.sum(f_normalize(embedding) * f_normalize(anchor), axis=-1)


def triplet_loss(embedding, far, near):
    """``d(x, far) - d(x, near)`` with cosine distances (see the module docstring)."""
    return cosine_dist(embedding, far) - cosine_dist(embedding, near)


def fawkes_loss(embedding, far, near=None):
    """``d(x, far)`` (``near`` ignored; there for a common signature)."""
    return cosine_dist(embedding, far)


def untarget_loss(embedding, far, near=None):
    """``-d(x, far)``: the code's ``untarget_loss`` uses the same ``tgt_emb`` argument as ``fawkes``."""
    return -cosine_dist(embedding, far)


LOSS_FUNCTIONS = {"triplet": triplet_loss, "fawkes": fawkes_loss, "untarget": untarget_loss}


def surrogate_loss(name: str, raw_embedding, far, near):
    """The per-surrogate loss of the cloak functions: L2-normalise the raw embedding, then ``LOSS_FUNCTIONS[name]``."""
    return LOSS_FUNCTIONS[name](normalize(raw_embedding), far, near)
