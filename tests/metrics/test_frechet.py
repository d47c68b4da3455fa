"""Fréchet distance: closed forms for Gaussians, an independent eigenvalue computation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from minmax.metrics.frechet import (
    feature_stats,
    frechet_distance,
    frechet_distance_features,
    trace_sqrt_product,
)


def random_spd(rng: np.random.Generator, d: int, rank: int | None = None) -> np.ndarray:
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d


def test_diagonal_covariances_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(7.25 + 4.0 + 1.0 + 0.0)


def test_commuting_covariances_closed_form():
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute: tr sqrt(S1 S2) = sum sqrt(a b).
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    a, b = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    mu = rng.normal(size=6)
    expected = np.sum(a + b - 2 * np.sqrt(a * b))
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("d", [2, 10, 64])
def test_random_case_matches_nonsymmetric_eigenvalues(d):
    # Independent route: eigenvalues of the non-symmetric product S1 S2 (real, >= 0).
    rng = np.random.default_rng(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    eig = np.linalg.eigvals(s1 @ s2)
    expected = (
        np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * np.sqrt(eig.astype(complex)).real.sum()
    )
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_symmetric_in_its_arguments_and_accepts_torch():
    rng = np.random.default_rng(1)
    s1, s2 = random_spd(rng, 5), random_spd(rng, 5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    forward = frechet_distance(mu1, s1, mu2, s2)
    backward = frechet_distance(torch.from_numpy(mu2), torch.from_numpy(s2), mu1, s1)
    assert forward == pytest.approx(backward, rel=1e-10)


def test_singular_covariances_stay_finite():
    rng = np.random.default_rng(2)
    s1, s2 = random_spd(rng, 20, rank=3), random_spd(rng, 20, rank=5)
    value = trace_sqrt_product(s1, s2)
    eig = np.linalg.eigvals(s1 @ s2).astype(complex)
    assert np.isfinite(value)
    assert value == pytest.approx(np.sqrt(eig).real.sum(), rel=1e-6)


def test_same_features_give_zero():
    x = np.random.default_rng(3).normal(size=(500, 8))
    assert frechet_distance_features(x, x) == pytest.approx(0.0, abs=1e-10)


def test_feature_stats_match_numpy():
    x = np.random.default_rng(4).normal(size=(50, 3))
    mu, sigma = feature_stats(x)
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False))


def test_fewer_samples_than_dimensions_warns():
    x = np.random.default_rng(5).normal(size=(5, 8))
    with pytest.warns(UserWarning, match="5 samples for 8-dimensional"):
        feature_stats(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        feature_stats(np.random.default_rng(5).normal(size=(8, 8)))


@pytest.mark.parametrize(
    "bad", [np.zeros(5), np.full((4, 2), np.nan), np.zeros((1, 3))], ids=["1d", "nan", "one-row"]
)
def test_bad_features_are_refused(bad):
    with pytest.raises(ValueError):
        feature_stats(bad)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
