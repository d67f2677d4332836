"""TIP-IM's naturalness term: maximum mean discrepancy with a sum of Gaussian kernels (``mmd.py``)."""
from __future__ import annotations

import jax.numpy as jnp

__all__ = ["TIPIM_SIGMAS", "pairwise_sq_distance", "gaussian_kernel_matrix", "mmd_loss", "image_mmd"]

# mmd.py's bandwidth list, kept as written there.
TIPIM_SIGMAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 5, 10, 15, 20, 25, 30, 35, 100, 1e3, 1e4, 1e5, 1e6)


def pairwise_sq_distance(x, y):
    """Squared Euclidean distances between the rows of ``x`` [n, d] and ``y`` [m, d] -> [n, m]."""
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError("Both inputs should be matrices.")
    if x.shape[1] != y.shape[1]:
        raise ValueError("The number of features should be the same.")
    return jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)


def gaussian_kernel_matrix(x, y, sigmas=TIPIM_SIGMAS):
    """Sum over ``sigmas`` of ``exp(-d / (2 sigma))``, d the squared distance -> [n, m].

    TIP-IM quirk (``mmd.py`` ``beta = 1 / (2 * sigmas)``): the bandwidth divides the squared
    distance directly, not ``2 sigma**2`` as in a textbook Gaussian kernel.
    """
    beta = 1.0 / (2.0 * jnp.asarray(sigmas, jnp.float32))
    dist = pairwise_sq_distance(x, y)
    return jnp.sum(jnp.exp(-beta[:, None, None] * dist[None]), axis=0)


def mmd_loss(source, target, sigmas=TIPIM_SIGMAS):
    """``mmd_loss``: MMD between the rows of ``source`` and ``target`` ([n, d] each), divided by n.

    TIP-IM feeds flattened images on the [0, 255] scale, one row per image of the batch.
    """
    cost = jnp.mean(gaussian_kernel_matrix(source, source, sigmas))
    cost += jnp.mean(gaussian_kernel_matrix(target, target, sigmas))
    cost -= 2.0 * jnp.mean(gaussian_kernel_matrix(source, target, sigmas))
    return cost / source.shape[0]


def image_mmd(adv, clean, sigmas=TIPIM_SIGMAS):
    """MMD of one adversarial image against its clean image (both [H, W, C], [0, 255]): rows of 1."""
    return mmd_loss(adv.reshape(1, -1), clean.reshape(1, -1), sigmas)

