"""Exact divergences: known values, and quadrature agreeing with Monte Carlo."""

from __future__ import annotations

import math

import pytest
import torch

from minmax.data.toy import Checkerboard, GaussianMixture, gaussian, mixture1d
from minmax.metrics.exact import jsd_grid, jsd_monte_carlo, log_ratio

LOG_2 = math.log(2)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_log_ratio_of_two_gaussians_is_linear():
    """log N(x; 0, 1) - log N(x; 1, 1) = 1/2 - x."""
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)[:, None]
    ratio = log_ratio(gaussian(), gaussian(mean=1.0), x)
    assert ratio.dtype == torch.float64
    torch.testing.assert_close(ratio, 0.5 - x[:, 0], rtol=0, atol=1e-12)


def test_log_ratio_off_both_supports_is_not_nan():
    board = Checkerboard()
    x = torch.tensor([[-3.0, -3.0], [-1.0, -3.0], [9.0, 9.0]])
    assert log_ratio(board, board, x).tolist() == [0.0, 0.0, 0.0]
    wide = gaussian(dim=2, std=3.0)
    ratio = log_ratio(board, wide, x)
    assert math.isfinite(ratio[0]) and ratio[1] == -math.inf and ratio[2] == -math.inf


def test_identical_densities_have_zero_jsd():
    p = mixture1d()
    assert jsd_grid(p, p, (-6.0, 7.0), 2000) == pytest.approx(0.0, abs=1e-12)
    assert jsd_monte_carlo(p, p, 1000, seeded()) == pytest.approx((0.0, 0.0), abs=1e-12)
    board = Checkerboard()
    assert jsd_grid(board, board, ((-5, 5), (-5, 5)), 100) == pytest.approx(0.0, abs=1e-12)


def test_disjoint_gaussians_reach_log_2():
    p, q = gaussian(mean=-5.0, std=0.1), gaussian(mean=5.0, std=0.1)
    assert jsd_grid(p, q, (-7.0, 7.0), 14_000) == pytest.approx(LOG_2, abs=1e-9)
    estimate, _ = jsd_monte_carlo(p, q, 1000, seeded())
    assert estimate == pytest.approx(LOG_2, abs=1e-9)


def test_jsd_is_symmetric():
    p, q = gaussian(std=1.0), mixture1d()
    assert jsd_grid(p, q, (-12, 12), 3000) == pytest.approx(jsd_grid(q, p, (-12, 12), 3000))


def assert_grid_matches_monte_carlo(p, q, bounds, n_points, n=20_000):
    exact = jsd_grid(p, q, bounds, n_points)
    estimate, standard_error = jsd_monte_carlo(p, q, n, seeded())
    assert 0 < exact < LOG_2
    assert 0 < standard_error < 0.05
    assert abs(exact - estimate) <= 4 * standard_error, (exact, estimate, standard_error)
    return exact


def test_grid_matches_monte_carlo_1d():
    exact = assert_grid_matches_monte_carlo(gaussian(std=1.5), mixture1d(), (-12.0, 12.0), 4000)
    # Finer grid changes nothing: the midpoint rule has converged.
    assert jsd_grid(gaussian(std=1.5), mixture1d(), (-12.0, 12.0), 8000) == pytest.approx(exact)


def test_grid_matches_monte_carlo_2d():
    p = gaussian(dim=2, std=1.5)
    q = GaussianMixture([[1.0, 0.0], [-1.0, 1.0]], [0.5, 0.7], [0.4, 0.6])
    assert_grid_matches_monte_carlo(p, q, ((-9.0, 9.0), (-9.0, 9.0)), 300)


def test_grid_matches_monte_carlo_with_a_checkerboard():
    # Bounds and n_points put the board's edges on cell borders, so no cell straddles a jump.
    bounds = ((-16.0, 16.0), (-16.0, 16.0))
    assert_grid_matches_monte_carlo(Checkerboard(), gaussian(dim=2, std=2.5), bounds, 320)


def test_bounds_must_match_dimension():
    with pytest.raises(ValueError, match="axes"):
        jsd_grid(gaussian(dim=2), gaussian(dim=2), (-1.0, 1.0), 10)
    with pytest.raises(ValueError, match="lo < hi"):
        jsd_grid(gaussian(), gaussian(), (1.0, -1.0), 10)
