"""Distances between two SETS of images through a feature extractor: Fréchet distance and KID.

* :func:`frechet_distance` is pytorch-fid's ``calculate_frechet_distance``:
  ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2))`` with ``scipy.linalg.sqrtm``; when the
  product is singular, ``eps * I`` is added to both covariances (as pytorch-fid), and a complex
  square root with imaginary parts above 1e-3 raises. It is **FID** only on the 2048-D pool3
  features of the FID InceptionV3 with its real weights
  (:mod:`jaxprotect.models.inception_fid`); on any other features it is a Fréchet distance "on
  <extractor> embeddings" and is labelled so, never FID.
* :func:`kid` is the Kernel Inception Distance of Bińkowski et al. (2018): the unbiased estimator of
  the squared MMD with the cubic polynomial kernel ``k(x, y) = (x . y / d + 1)^3`` (d = feature
  dimension), averaged over ``subsets`` random subsets of ``subset_size`` rows of each set, drawn
  from an explicit numpy seed. Also labelled with its feature extractor.

With fewer images than feature dimensions the covariance estimate is rank-deficient and the
Fréchet distance is biased upwards; KID's estimator is unbiased at any size, which is why both are
reported with ``n``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["feature_statistics", "frechet_distance", "polynomial_kernel", "mmd2_unbiased", "kid"]


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """``(mu [D], sigma [D, D])`` of ``features`` [N, D] (``np.cov(rowvar=False)``, float64)."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features [N >= 2, D], got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2) (pytorch-fid's formula)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("mean vectors / covariances of different shapes")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))} in sqrtm(S1 S2)")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def polynomial_kernel(x, y, degree: int = 3, gamma: float | None = None, coef0: float = 1.0) -> np.ndarray:
    """``(gamma * x @ y.T + coef0) ** degree`` with ``gamma = 1 / D`` by default; [N, D] x [M, D] -> [N, M]."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * x @ y.T + coef0) ** degree


def mmd2_unbiased(x, y, **kernel) -> float:
    """Unbiased squared MMD between samples ``x`` [m, D] and ``y`` [n, D] (m, n >= 2)."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError("the unbiased MMD needs at least 2 samples per set")
    kxx, kyy, kxy = polynomial_kernel(x, x, **kernel), polynomial_kernel(y, y, **kernel), polynomial_kernel(x, y, **kernel)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kid(x, y, subsets: int = 100, subset_size: int = 1000, seed: int = 0, **kernel) -> dict:
    """KID: mean and std of the unbiased MMD^2 over random subsets (without replacement within a subset).

    ``x`` [N, D], ``y`` [M, D] features; ``subset_size`` is capped at ``min(N, M)``; when it covers
    both sets entirely a single exact value is returned (std 0). Returns ``{"kid", "std", "subsets",
    "subset_size", "kernel"}``.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    size = min(subset_size, len(x), len(y))
    desc = "k(x, y) = ({} x.y + {})^{}".format(
        "1/d" if kernel.get("gamma") is None else kernel["gamma"], kernel.get("coef0", 1.0), kernel.get("degree", 3))
    if size == len(x) == len(y):
        value = mmd2_unbiased(x, y, **kernel)
        return {"kid": value, "std": 0.0, "subsets": 1, "subset_size": size, "kernel": desc}
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(x[rng.choice(len(x), size, replace=False)], y[rng.choice(len(y), size, replace=False)],
                            **kernel) for _ in range(subsets)]
    return {"kid": float(np.mean(values)), "std": float(np.std(values)), "subsets": subsets, "subset_size": size,
            "kernel": desc}
