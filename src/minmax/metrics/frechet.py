"""Fréchet distance between Gaussians fitted to two feature sets (FID when the features are
Inception-v3 pool3, Heusel et al., "GANs Trained by a Two Time-Scale Update Rule...", 2017).

    d^2 = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^{1/2})

The trace term is computed without a general matrix square root: S_1 S_2 is similar to the
symmetric PSD matrix M = S_1^{1/2} S_2 S_1^{1/2}, so tr((S_1 S_2)^{1/2}) = sum_i sqrt(l_i(M)).
Both square roots come from symmetric eigendecompositions (``eigh``), whose tiny negative
eigenvalues (round-off on singular covariances) are clipped to zero: no complex parts to
discard and no pytorch-fid-style ``eps * I`` retry.
"""

from __future__ import annotations

import warnings

import numpy as np
from torch import Tensor

ArrayLike = np.ndarray | Tensor


def as_float64(x: ArrayLike) -> np.ndarray:
    """A float64 numpy copy of a numpy array or torch tensor (any device)."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def as_feature_matrix(x: ArrayLike, what: str = "features") -> np.ndarray:
    """Check for an (N, d) matrix of finite values and return it as float64."""
    out = as_float64(x)
    if out.ndim != 2:
        raise ValueError(f"{what} must be an (N, d) matrix, got shape {out.shape}")
    if not np.isfinite(out).all():
        raise ValueError(f"{what} contain NaN or inf")
    return out


def feature_stats(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of an (N, d) feature matrix, in float64.

    The covariance divides by N - 1 (``np.cov``'s default, as pytorch-fid and torchmetrics
    do). With N < d it is singular and the distance is biased upwards: warned about.
    """
    x = as_feature_matrix(features)
    n, d = x.shape
    if n < 2:
        raise ValueError(f"feature statistics need at least 2 samples, got {n}")
    if n < d:
        warnings.warn(
            f"{n} samples for {d}-dimensional features: the covariance is singular and the "
            "Fréchet distance is biased; use at least as many samples as dimensions",
            stacklevel=2,
        )
    mu = x.mean(axis=0)
    centered = x - mu
    sigma = centered.T @ centered / (n - 1)
    return mu, sigma


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative round-off clipped)."""
    eigenvalues, eigenvectors = np.linalg.eigh((s + s.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S_1 S_2)^{1/2}) = sum sqrt(eig(S_1^{1/2} S_2 S_1^{1/2})) for PSD S_1, S_2."""
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    Inputs are float64-converted; the result is >= 0 up to round-off (clipped at 0).
    """
    mu1, mu2 = as_float64(mu1), as_float64(mu2)
    sigma1, sigma2 = as_float64(sigma1), as_float64(sigma2)
    d = mu1.shape[-1]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            "shapes must be mu (d,) and sigma (d, d) for both sets, got "
            f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}"
        )
    mean_term = float(np.square(mu1 - mu2).sum())
    cov_term = float(np.trace(sigma1) + np.trace(sigma2)) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return max(0.0, mean_term + cov_term)


def frechet_distance_features(real: ArrayLike, fake: ArrayLike) -> float:
    """Fréchet distance between Gaussians fitted to two (N, d) feature matrices."""
    return frechet_distance(*feature_stats(real), *feature_stats(fake))
