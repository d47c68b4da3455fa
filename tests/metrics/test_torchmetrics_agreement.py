"""FID and KID agree with torchmetrics given the same features (an identity "feature net")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from minmax.metrics.frechet import frechet_distance_features
from minmax.metrics.kid import kid

pytest.importorskip("torchmetrics")

from torchmetrics.image.fid import FrechetInceptionDistance  # noqa: E402
from torchmetrics.image.kid import KernelInceptionDistance  # noqa: E402


class Identity(nn.Module):
    """Hands torchmetrics our features unchanged."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def feature_sets(d: int = 16, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    real = rng.normal(size=(n, d)) @ mix
    fake = 0.3 + 1.2 * rng.normal(size=(n + 50, d)) @ mix.T
    return np.maximum(real, 0), np.maximum(fake, 0)  # ReLU-like, as pool3 features are


def test_fid_matches_torchmetrics():
    real, fake = feature_sets()
    metric = FrechetInceptionDistance(feature=Identity(real.shape[1]))
    metric.update(torch.from_numpy(real), real=True)
    metric.update(torch.from_numpy(fake), real=False)
    expected = float(metric.compute())
    assert expected > 0.1
    assert frechet_distance_features(real, fake) == pytest.approx(expected, rel=1e-4)


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_matches_torchmetrics():
    real, fake = feature_sets()
    m = min(len(real), len(fake))
    real, fake = real[:m], fake[:m]
    # Subsets as large as the sets: every subset is the whole set, so both libraries' random
    # draws give the same value and the comparison is exact.
    metric = KernelInceptionDistance(feature=Identity(real.shape[1]), subsets=3, subset_size=m)
    metric.update(torch.from_numpy(real), real=True)
    metric.update(torch.from_numpy(fake), real=False)
    expected_mean, expected_std = (float(v) for v in metric.compute())
    mean, std = kid(real, fake, n_subsets=3, subset_size=m)
    assert expected_mean > 0
    assert mean == pytest.approx(expected_mean, rel=1e-4)
    assert std == pytest.approx(expected_std, abs=1e-9)
