"""Precision/recall and density/coverage on point sets whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from minmax.metrics import manifold
from minmax.metrics.manifold import density_coverage, knn_radii, precision_recall


def clusters(centers: np.ndarray, per_cluster: int, seed: int, spread: float = 0.1):
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [c + spread * rng.normal(size=(per_cluster, centers.shape[1])) for c in centers]
    )


CENTERS = 100.0 * np.eye(4)  # four clusters, 100 apart


def test_identical_sets_are_perfect():
    real = clusters(CENTERS, 30, seed=0)
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    density, coverage = density_coverage(real, real.copy())
    assert coverage == 1.0
    assert density >= 1.0  # each fake sits at a ball centre, plus any neighbours' balls


def test_far_apart_sets_score_zero():
    real = clusters(CENTERS, 20, seed=1)
    fake = clusters(CENTERS + 1000.0, 20, seed=2)
    assert precision_recall(real, fake) == (0.0, 0.0)
    assert density_coverage(real, fake) == (0.0, 0.0)


def test_fake_on_half_the_clusters():
    real = clusters(CENTERS, 25, seed=3)
    fake = real[:50].copy()  # exactly the first two clusters' points
    precision, recall = precision_recall(real, fake)
    assert (precision, recall) == (1.0, 0.5)
    assert density_coverage(real, fake)[1] == 0.5


def test_fresh_samples_of_half_the_clusters():
    real = clusters(CENTERS, 200, seed=4)
    fake = clusters(CENTERS[:2], 400, seed=5)
    precision, recall = precision_recall(real, fake)
    density, coverage = density_coverage(real, fake)
    # Half the real clusters are unreachable, so recall and coverage cannot exceed 1/2; k-NN
    # balls of finite samples miss some edge points, so they fall a little short of it.
    assert 0.85 < precision <= 1.0
    assert 0.4 < recall <= 0.5
    assert 0.45 < coverage <= 0.5
    assert density == pytest.approx(1.0, abs=0.2)


def test_one_dimensional_by_hand():
    # Real 0, 1, 2, 3 with k = 1: every real radius is 1. Fake 0.5 and an outlier at 10: both
    # fake radii are 9.5, so the outlier's ball swallows every real point (recall 1) while
    # coverage, which only uses real balls, sees two of four real points reached.
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[0.5], [10.0]])
    assert precision_recall(real, fake, k=1) == (0.5, 1.0)
    # 0.5 lies in the balls of 0 and 1: density = 2 / (k M) = 2 / 2.
    assert density_coverage(real, fake, k=1) == (1.0, 0.5)


def test_ball_boundary_counts_as_inside():
    real = np.array([[0.0], [1.0], [20.0], [21.0]])  # every radius is 1 with k = 1
    fake = np.array([[2.0], [2.5]])  # 2.0 is exactly on the ball of 1, 2.5 outside
    precision, _ = precision_recall(real, fake, k=1)
    assert precision == 0.5


def brute_force(real, fake, k):
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]

    d_rf = np.linalg.norm(real[:, None] - fake[None], axis=-1)
    r_real, r_fake = radii(real), radii(fake)
    inside_real = d_rf <= r_real[:, None]
    precision = inside_real.any(axis=0).mean()
    recall = (d_rf <= r_fake[None, :]).any(axis=1).mean()
    density = inside_real.sum() / (k * len(fake))
    coverage = inside_real.any(axis=1).mean()
    return precision, recall, density, coverage


def test_chunked_matches_brute_force(monkeypatch):
    monkeypatch.setattr(manifold, "_CHUNK_ELEMENTS", 50)  # force many small chunks
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(60, 5)), rng.normal(0.3, 1.2, size=(45, 5))
    p, r, d, c = brute_force(real, fake, k=3)
    assert precision_recall(real, fake, k=3) == pytest.approx((p, r))
    assert density_coverage(real, fake, k=3) == pytest.approx((d, c))


def test_knn_radii_exclude_self():
    import torch

    x = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    assert knn_radii(x, 1).tolist() == [1.0, 1.0, 2.0]
    assert knn_radii(x, 2).tolist() == [3.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="k must be"):
        knn_radii(x, 3)
