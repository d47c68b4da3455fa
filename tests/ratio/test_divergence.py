"""Divergences from D's logits, checked with the exact ratio of two known densities."""

import math

import pytest
import torch

from minmax.data import GaussianMixture
from minmax.metrics import jsd_grid
from minmax.ratio.divergence import (
    KDEDensity,
    LogDensities,
    bootstrap_means,
    divergence_estimates,
    exact_divergences,
)

P = GaussianMixture([[-1.0, 0.0], [1.0, 0.0]], [0.5, 0.5])
Q = GaussianMixture([[-1.0, 0.0], [1.0, 0.0]], [0.6, 0.6], [0.8, 0.2])
BOUNDS = ((-5.0, 5.0), (-4.0, 4.0))


def test_exact_divergences_agree_with_quadrature_and_closed_forms():
    exact = exact_divergences(P, Q, 40_000, seed=0)
    assert exact["jsd"] == pytest.approx(jsd_grid(P, Q, BOUNDS, 401), abs=0.005)
    # One Gaussian against another (same mean): KL = d (log s_q/s_p + s_p²/(2 s_q²) − 1/2).
    one_p, one_q = GaussianMixture([[0.0, 0.0]], [1.0]), GaussianMixture([[0.0, 0.0]], [2.0])
    kl = exact_divergences(one_p, one_q, 40_000, seed=0)
    assert kl["kl_pq"] == pytest.approx(2 * (math.log(2) + 1 / 8 - 0.5), abs=0.01)
    assert kl["kl_qp"] == pytest.approx(2 * (-math.log(2) + 2 - 0.5), abs=0.03)


def test_estimates_from_the_exact_ratio_cover_the_truth():
    rng = torch.Generator().manual_seed(1)
    x_p, x_q = P.sample(20_000, rng), Q.sample(20_000, rng)
    logits_p = P.log_prob(x_p) - Q.log_prob(x_p)
    logits_q = P.log_prob(x_q) - Q.log_prob(x_q)
    estimates = divergence_estimates(logits_p, logits_q, n_boot=400, seed=0)
    truth = exact_divergences(P, Q, 200_000, seed=2)
    truth["jsd"] = jsd_grid(P, Q, BOUNDS, 401)
    for key, ref in (("jsd_bound", "jsd"), ("kl_pq", "kl_pq"), ("kl_qp", "kl_qp")):
        e = estimates[key]
        assert e.low < e.value < e.high
        slack = 0.5 * (e.high - e.low)  # a 95% interval misses 1 in 20: allow its own width
        assert e.low - slack < truth[ref] < e.high + slack, (key, e, truth[ref])
    # At D = D*, V_D = 2 log 2 − 2 JSD: the bound is tight.
    assert estimates["v_d"].value == pytest.approx(2 * math.log(2) - 2 * truth["jsd"], abs=0.01)


def test_a_worse_d_only_lowers_the_jsd_bound():
    rng = torch.Generator().manual_seed(3)
    x_p, x_q = P.sample(20_000, rng), Q.sample(20_000, rng)
    best = divergence_estimates(
        P.log_prob(x_p) - Q.log_prob(x_p), P.log_prob(x_q) - Q.log_prob(x_q), 100
    )
    blurred = divergence_estimates(
        0.5 * (P.log_prob(x_p) - Q.log_prob(x_p)), 0.5 * (P.log_prob(x_q) - Q.log_prob(x_q)), 100
    )
    assert blurred["jsd_bound"].value < best["jsd_bound"].value


def test_bootstrap_is_seeded_and_narrows_with_more_samples():
    terms = torch.randn(4000, dtype=torch.float64)
    a = bootstrap_means(terms, terms[:0], 200, seed=5)
    assert torch.equal(a, bootstrap_means(terms, terms[:0], 200, seed=5))
    assert a.std() == pytest.approx(1 / math.sqrt(4000), rel=0.2)
    narrow = bootstrap_means(torch.randn(16_000, dtype=torch.float64), terms[:0], 200, seed=5)
    assert narrow.std() < 0.7 * a.std()


def test_kde_is_the_density_convolved_with_its_kernel():
    """A KDE of N(0, I) samples with bandwidth h is ≈ N(0, (1 + h²) I), and samples from it."""
    rng = torch.Generator().manual_seed(6)
    h = 0.5
    kde = KDEDensity(torch.randn(20_000, 2, generator=rng), h)
    smooth = GaussianMixture([[0.0, 0.0]], [math.sqrt(1 + h * h)])
    x = torch.tensor([[0.0, 0.0], [1.0, -0.5], [-1.5, 1.0]])
    torch.testing.assert_close(kde.log_prob(x), smooth.log_prob(x), atol=0.05, rtol=0)
    draws = kde.sample(20_000, rng)
    assert float(draws.var(0).mean()) == pytest.approx(1 + h * h, rel=0.05)


def test_log_densities_ratio_error_is_zero_for_the_exact_ratio():
    rng = torch.Generator().manual_seed(7)
    x_p, x_q = P.sample(500, rng), Q.sample(500, rng)
    logs = LogDensities.of(P, Q.log_prob, x_p, x_q)
    exact = logs.ratio_error(logs.p_at_p - logs.q_at_p, logs.p_at_q - logs.q_at_q)
    assert exact["ratio_error_mean"] == pytest.approx(0.0, abs=1e-9)
    off = logs.ratio_error(logs.p_at_p - logs.q_at_p + 0.3, logs.p_at_q - logs.q_at_q + 0.3)
    assert off["ratio_error_mean"] == pytest.approx(0.3)
    assert off["ratio_error_median"] == pytest.approx(0.3)
