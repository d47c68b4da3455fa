"""Kernel distance: unbiasedness, sensitivity to a shift, a hand-checked kernel, seeding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from minmax.metrics.kid import kid, mmd2_unbiased, polynomial_kernel


def brute_force_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]

    def k(a, b):
        return (a @ b / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(a, b) for a in x for b in y) / (m * n)
    return xx + yy - 2 * xy


def test_polynomial_kernel_by_hand():
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([[3.0, -1.0]], dtype=torch.float64)
    # x . y = 1, d = 2: (1/2 + 1)^3 = 3.375
    assert polynomial_kernel(x, y).item() == pytest.approx(3.375)


def test_mmd_matches_brute_force():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 3)), rng.normal(1.0, 1.0, size=(7, 3))
    got = mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y))
    assert got == pytest.approx(brute_force_mmd2(x, y), rel=1e-12)


def test_same_distribution_is_zero_in_expectation():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(2000, 16)), rng.normal(size=(2000, 16))
    mean, std = kid(real, fake, n_subsets=50, subset_size=200, seed=0)
    # Unbiased: the mean over subsets is within a few standard errors of 0.
    assert abs(mean) < 4 * std / np.sqrt(50)


def test_shift_is_detected_and_grows():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(1000, 16))
    small, _ = kid(real, rng.normal(size=(1000, 16)) + 0.3, n_subsets=20, subset_size=200)
    large, std = kid(real, rng.normal(size=(1000, 16)) + 1.0, n_subsets=20, subset_size=200)
    assert large > small > 0
    assert large > 10 * std


def test_seed_reproduces_and_changes_subsets():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(300, 4)), rng.normal(0.5, 1.0, size=(300, 4))
    assert kid(real, fake, 10, 50, seed=7) == kid(real, fake, 10, 50, seed=7)
    assert kid(real, fake, 10, 50, seed=7) != kid(real, fake, 10, 50, seed=8)


def test_subset_size_is_capped_by_the_smaller_set():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(30, 4)), rng.normal(size=(20, 4))
    # With subsets as large as the smaller set, every subset of fake is all of it.
    expected = mmd2_unbiased(torch.from_numpy(real[:20]), torch.from_numpy(fake))
    mean, _ = kid(real[:20], fake, n_subsets=3, subset_size=1000)
    assert mean == pytest.approx(expected, rel=1e-12)
    kid(real, fake, n_subsets=2, subset_size=1000)  # runs with m = 20


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="feature sizes differ"):
        kid(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        kid(np.zeros((1, 2)), np.zeros((5, 2)))
