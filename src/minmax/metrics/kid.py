"""Kernel distance (KID when the features are Inception-v3 pool3; Bińkowski et al.,
"Demystifying MMD GANs", ICLR 2018).

The unbiased estimate of the squared MMD with the cubic polynomial kernel
k(x, y) = (x . y / d + 1)^3, for subsets X, Y of m samples each:

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
              - 2 sum_{i, j} k(x_i, y_j) / m^2

averaged over ``n_subsets`` random subsets drawn without replacement, as in
stylegan2-ada-pytorch's ``metrics/kernel_inception_distance.py`` (100 subsets of at most 1000,
the subset size capped by the smaller set). Unlike FID it is unbiased: its expectation is 0
when both sets come from one distribution, so small negative values are normal.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from minmax.metrics.frechet import ArrayLike, as_feature_matrix


def polynomial_kernel(x: Tensor, y: Tensor, degree: int = 3) -> Tensor:
    """k(x, y) = (x . y / d + 1)^degree for all row pairs: an (m, n) matrix."""
    return (x @ y.T / x.shape[1] + 1.0) ** degree


def mmd2_unbiased(x: Tensor, y: Tensor, degree: int = 3) -> float:
    """Unbiased squared MMD between the rows of x (m, d) and y (n, d), m, n >= 2."""
    m, n = x.shape[0], y.shape[0]
    k_xx = polynomial_kernel(x, x, degree)
    k_yy = polynomial_kernel(y, y, degree)
    k_xy = polynomial_kernel(x, y, degree)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.sum() / (m * n))


def kid(
    feats_real: ArrayLike,
    feats_fake: ArrayLike,
    n_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """(mean, std) of the unbiased polynomial-kernel MMD^2 over random subsets.

    Each subset draws min(subset_size, N_real, N_fake) rows of each set without replacement
    (numpy ``default_rng(seed)``, so the result is reproducible). ``std`` is the population
    standard deviation over subsets (ddof=0, as torchmetrics reports it): the spread of the
    subset estimates, not the standard error of the mean.
    """
    real = as_feature_matrix(feats_real, "real features")
    fake = as_feature_matrix(feats_fake, "fake features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: real {real.shape[1]}, fake {fake.shape[1]}")
    if n_subsets < 1:
        raise ValueError(f"n_subsets must be >= 1, got {n_subsets}")
    m = min(subset_size, real.shape[0], fake.shape[0])
    if m < 2:
        raise ValueError(f"KID needs subsets of at least 2 samples, got {m}")
    rng = np.random.default_rng(seed)
    real_t, fake_t = torch.from_numpy(real), torch.from_numpy(fake)
    values = np.empty(n_subsets)
    for index in range(n_subsets):
        rows_real = torch.from_numpy(rng.choice(real.shape[0], m, replace=False))
        rows_fake = torch.from_numpy(rng.choice(fake.shape[0], m, replace=False))
        values[index] = mmd2_unbiased(real_t[rows_real], fake_t[rows_fake])
    return float(values.mean()), float(values.std())
