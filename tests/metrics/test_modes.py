"""Mode coverage (VEEGAN/PacGAN protocol) on hand-built samples with known answers."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from minmax.data.toy import GaussianMixture, grid, mixture1d, ring
from minmax.metrics.modes import ModeReport, mode_report


def offset(mixture: GaussianMixture, mode: int, n_std: float, angle: float = 0.7) -> list:
    """The point n_std stds from mode ``mode`` of a 2-D mixture, in direction ``angle``."""
    step = n_std * float(mixture.stds[mode])
    mean = mixture.means[mode]
    return [float(mean[0]) + step * math.cos(angle), float(mean[1]) + step * math.sin(angle)]


def test_samples_at_every_mean():
    mixture = ring()
    report = mode_report(mixture.means.repeat(5, 1).float(), mixture)
    assert report.spread < 1e-5  # float32 rounding of the means, in stds
    assert dataclasses.replace(report, spread=0.0) == ModeReport(
        n_samples=40, n_modes=8, modes_captured=8, hq_fraction=1.0, reverse_kl=0.0, counts=[5] * 8
    )


def test_half_the_ring_gives_log_2():
    mixture = ring()
    samples = mixture.means[::2].repeat(3, 1)
    report = mode_report(samples, mixture)
    assert report.modes_captured == 4
    assert report.counts == [3, 0] * 4
    assert report.hq_fraction == 1.0
    assert report.reverse_kl == pytest.approx(math.log(2), abs=1e-12)


def test_samples_at_four_stds_are_all_low_quality():
    mixture = ring()
    samples = torch.tensor([offset(mixture, k, 4.0) for k in range(8)])
    report = mode_report(samples, mixture)
    assert report.modes_captured == 0 and report.hq_fraction == 0.0
    assert report.counts == [0] * 8 and report.reverse_kl == math.inf
    assert mode_report(samples, mixture, n_std=5.0).modes_captured == 8


def test_threshold_is_three_stds():
    mixture = grid()
    samples = torch.tensor([offset(mixture, 0, 2.9), offset(mixture, 7, 3.1)])
    report = mode_report(samples, mixture)
    assert report.counts[0] == 1 and report.counts[7] == 0
    assert report.modes_captured == 1 and report.hq_fraction == 0.5
    assert report.reverse_kl == pytest.approx(math.log(25))


def test_reverse_kl_uses_mixture_weights():
    mixture = mixture1d()  # weights (0.3, 0.5, 0.2)
    proportional = mixture.means.repeat_interleave(torch.tensor([3, 5, 2]), dim=0)
    assert mode_report(proportional, mixture).reverse_kl == pytest.approx(0.0, abs=1e-12)
    first_two = mixture.means[:2]  # q = (1/2, 1/2, 0)
    expected = 0.5 * math.log(0.5 / 0.3) + 0.5 * math.log(0.5 / 0.5)
    assert mode_report(first_two, mixture).reverse_kl == pytest.approx(expected, rel=1e-12)


def test_true_samples_on_the_grid():
    """In 2-D, P(|x - mu| <= 3 s) = 1 - exp(-9/2) for an isotropic Gaussian."""
    mixture = grid()
    n = 100_000
    samples = mixture.sample(n, torch.Generator().manual_seed(0))
    report = mode_report(samples, mixture)
    expected = 1 - math.exp(-4.5)
    assert report.n_samples == n and report.modes_captured == 25
    assert abs(report.hq_fraction - expected) <= 4 * math.sqrt(expected * (1 - expected) / n)
    assert 0 < report.reverse_kl < 1e-3

    # Reference: all pairwise distances at once.
    distance = torch.cdist(samples.double(), mixture.means)
    nearest_distance, nearest = distance.min(1)
    keep = nearest_distance <= 3 * 0.05
    assert report.counts == torch.bincount(nearest[keep], minlength=25).tolist()

    # Spread: E[r^2 | r <= 3] = (2 - 11 e^(-9/2)) / (1 - e^(-9/2)) for r the distance in stds.
    truncated = (2 - 11 * math.exp(-4.5)) / (1 - math.exp(-4.5))
    assert report.spread == pytest.approx(math.sqrt(truncated / 2), abs=0.005)
    # Pulled halfway to their means, the samples are half as wide and (nearly) all HQ.
    nearest_mean = mixture.means[nearest].float()
    tight = mode_report(nearest_mean + 0.5 * (samples - nearest_mean), mixture)
    assert tight.spread == pytest.approx(0.5, abs=0.005)
    assert tight.hq_fraction > 0.9999


def test_as_dict_carries_the_protocol():
    mixture = ring()
    out = mode_report(mixture.means, mixture).as_dict()
    assert out == {
        "n_samples": 8,
        "n_modes": 8,
        "modes_captured": 8,
        "hq_fraction": 1.0,
        "reverse_kl": 0.0,
        "counts": [1] * 8,
        "spread": 0.0,
        "n_std": 3.0,
    }


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        mode_report(torch.zeros(4, 3), ring())
    with pytest.raises(ValueError, match="at least one"):
        mode_report(torch.zeros(0, 2), ring())
