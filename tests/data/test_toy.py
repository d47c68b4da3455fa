"""Toy densities: exact log_prob integrates to 1, samples match it, factories are as documented."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from minmax.data.toy import (
    TOY_DENSITIES,
    Checkerboard,
    Density,
    GaussianMixture,
    gaussian,
    grid,
    mixture1d,
    ring,
    spiral,
)
from minmax.errors import UsageError

MIXTURE_NAMES = ["ring", "grid", "mixture1d", "gaussian1d", "spiral"]


def make(name: str) -> Density:
    return TOY_DENSITIES.get(name)()


def midpoint_integral(density: Density, lows: list[float], highs: list[float], step: float):
    """Midpoint rule of exp(log_prob) on a box: spectrally accurate for Gaussians with
    step <= std / 2, and exact for piecewise-constant densities with edges on cell borders."""
    axes = []
    for lo, hi in zip(lows, highs, strict=True):
        n = round((hi - lo) / step)
        axes.append(lo + step * (torch.arange(n, dtype=torch.float64) + 0.5))
    points = torch.cartesian_prod(*axes) if len(axes) > 1 else axes[0][:, None]
    return float(density.log_prob(points).exp().sum()) * step ** len(axes)


def total_mass(density: Density) -> float:
    if isinstance(density, GaussianMixture):
        margin = 10 * float(density.stds.max())
        lows = (density.means.min(0).values - margin).tolist()
        highs = (density.means.max(0).values + margin).tolist()
        return midpoint_integral(density, lows, highs, float(density.stds.min()) / 2)
    if isinstance(density, Checkerboard):
        return midpoint_integral(density, [-5.0, -5.0], [5.0, 5.0], 0.1)
    raise AssertionError(f"no integration rule for {density!r}: add one to this test")


def test_registry_names():
    assert TOY_DENSITIES.names() == sorted(
        ["ring", "grid", "mixture1d", "gaussian1d", "spiral", "checkerboard"]
    )


def test_registry_unknown_name_suggests():
    with pytest.raises(UsageError, match="did you mean 'spiral'"):
        TOY_DENSITIES.get("spiarl")


@pytest.mark.parametrize("name", TOY_DENSITIES.names())
def test_log_prob_integrates_to_one(name):
    assert total_mass(make(name)) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", TOY_DENSITIES.names())
def test_interface_shapes_and_dtypes(name):
    density = make(name)
    assert isinstance(density, Density)
    x = density.sample(7, torch.Generator().manual_seed(0))
    assert x.shape == (7, density.dim) and x.dtype == torch.float32
    log_p = density.log_prob(x)
    assert log_p.shape == (7,) and log_p.dtype == torch.float64
    assert torch.isfinite(log_p).all(), "own samples must lie in the support"
    assert density.sample(0).shape == (0, density.dim)


@pytest.mark.parametrize("name", TOY_DENSITIES.names())
def test_seeded_sampling_is_deterministic(name):
    density = make(name)
    a = density.sample(50, torch.Generator().manual_seed(3))
    b = density.sample(50, torch.Generator().manual_seed(3))
    c = density.sample(50, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", MIXTURE_NAMES)
def test_sample_moments_match(name):
    mixture = make(name)
    n = 100_000
    x = mixture.sample(n, torch.Generator().manual_seed(0)).double()
    w, mu, s2 = mixture.weights, mixture.means, mixture.stds.square()
    mean = w @ mu
    second = (w * s2).sum() * torch.eye(mixture.dim, dtype=torch.float64) + (mu.T * w) @ mu
    cov = second - torch.outer(mean, mean)
    centred = x - x.mean(0)
    products = centred[:, :, None] * centred[:, None, :]
    mean_se = (cov.diagonal() / n).sqrt()
    cov_se = products.std(0) / math.sqrt(n)
    assert ((x.mean(0) - mean).abs() <= 5 * mean_se).all()
    assert ((products.mean(0) - cov).abs() <= 5 * cov_se).all()


def test_ring_has_distinct_means_on_the_circle():
    mixture = ring()
    assert mixture.n_modes == 8 and mixture.dim == 2
    torch.testing.assert_close(mixture.means.norm(dim=1), torch.ones(8, dtype=torch.float64))
    gaps = torch.cdist(mixture.means, mixture.means) + 10 * torch.eye(8)
    assert gaps.min() == pytest.approx(2 * math.sin(math.pi / 8))
    angles = torch.atan2(mixture.means[:, 1], mixture.means[:, 0]) % (2 * math.pi)
    expected = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    torch.testing.assert_close(angles, expected)
    assert (mixture.stds == 0.01).all()


def test_grid_has_exactly_the_25_means():
    mixture = grid()
    got = {tuple(round(v, 9) for v in row) for row in mixture.means.tolist()}
    values = [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert mixture.n_modes == 25
    assert got == set(itertools.product(values, values))
    assert (mixture.stds == 0.05).all()
    torch.testing.assert_close(mixture.weights, torch.full((25,), 0.04, dtype=torch.float64))


def test_mixture1d_is_the_documented_mixture():
    mixture = mixture1d()
    assert mixture.means.flatten().tolist() == [-2.0, 0.5, 3.0]
    assert mixture.stds.tolist() == [0.4, 0.6, 0.3]
    torch.testing.assert_close(mixture.weights, torch.tensor([0.3, 0.5, 0.2], dtype=torch.float64))


def test_spiral_centres_evenly_spaced():
    mixture = spiral()
    assert mixture.n_modes == 100
    steps = (mixture.means[1:] - mixture.means[:-1]).norm(dim=1)
    assert steps.max() / steps.min() < 1.05
    radii = mixture.means.norm(dim=1)
    assert (radii[1:] > radii[:-1]).all() and radii.max() == pytest.approx(4.0)


def test_single_gaussian_matches_closed_form():
    density = gaussian(dim=3, mean=0.5, std=2.0)
    x = torch.randn(20, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    d2 = (x - 0.5).square().sum(1)
    expected = -0.5 * d2 / 4.0 - 3 * math.log(2.0) - 1.5 * math.log(2 * math.pi)
    torch.testing.assert_close(density.log_prob(x), expected, rtol=1e-12, atol=1e-12)


def test_mixture_log_prob_matches_weighted_sum():
    mixture = mixture1d()
    x = torch.linspace(-4, 5, 37, dtype=torch.float64)
    pdf = sum(
        w * torch.distributions.Normal(torch.tensor(m, dtype=x.dtype), s).log_prob(x).exp()
        for w, m, s in zip([0.3, 0.5, 0.2], [-2.0, 0.5, 3.0], [0.4, 0.6, 0.3], strict=True)
    )
    torch.testing.assert_close(mixture.log_prob(x[:, None]), pdf.log(), rtol=1e-12, atol=1e-12)


def test_log_prob_far_from_all_modes_is_finite():
    log_p = ring().log_prob(torch.tensor([[30.0, -40.0]]))
    assert torch.isfinite(log_p).all() and log_p.item() < -1e6


def test_checkerboard_log_prob_values():
    board = Checkerboard()
    inside = -math.log(32.0)
    x = torch.tensor([[-3.0, -3.0], [-1.0, -1.0], [3.0, 3.0], [-1.0, -3.0], [1.0, -1.0], [5.0, 0]])
    expected = [inside, inside, inside, -math.inf, -math.inf, -math.inf]
    assert board.log_prob(x).tolist() == expected


def test_checkerboard_samples_spread_over_dark_squares():
    board = Checkerboard()
    x = board.sample(40_000, torch.Generator().manual_seed(0)).double()
    assert torch.isfinite(board.log_prob(x)).all()
    square = torch.floor((x + 4) / 2).clamp(0, 3).long()
    counts = torch.bincount(square[:, 0] * 4 + square[:, 1], minlength=16).double()
    dark = torch.tensor([(i + j) % 2 == 0 for i in range(4) for j in range(4)])
    assert (counts[~dark] == 0).all()
    expected, se = 5000.0, math.sqrt(40_000 * (1 / 8) * (7 / 8))
    assert ((counts[dark] - expected).abs() <= 5 * se).all()


@pytest.mark.parametrize(
    ("means", "stds", "weights"),
    [
        ([0.0, 1.0], [1.0, 1.0], None),  # means not (K, d)
        ([[0.0], [1.0]], [1.0], None),  # one std for two modes
        ([[0.0], [1.0]], [1.0, 0.0], None),  # zero std
        ([[0.0], [1.0]], [1.0, -1.0], None),  # negative std
        ([[0.0], [1.0]], [1.0, 1.0], [0.5, -0.5]),  # negative weight
        ([[0.0], [1.0]], [1.0, 1.0], [0.0, 0.0]),  # weights sum to 0
        ([[0.0], [float("nan")]], [1.0, 1.0], None),  # NaN mean
    ],
)
def test_mixture_rejects_bad_parameters(means, stds, weights):
    with pytest.raises(ValueError):
        GaussianMixture(means, stds, weights)


def test_weights_are_normalised():
    mixture = GaussianMixture([[0.0], [5.0]], [1.0, 1.0], [1.0, 3.0])
    assert mixture.weights.tolist() == [0.25, 0.75]


def test_log_prob_rejects_wrong_dim():
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        ring().log_prob(torch.zeros(3, 1))
