import math

import torch

from minmax.data import GaussianMixture, gaussian, mixture1d, ring
from minmax.theory.checks import density_pairs
from minmax.theory.dynamics import binned_jsd, mixture_cdf, saturation_experiment
from minmax.theory.optimal_d import evaluate_discriminator, fit_discriminator


def test_mixture_cdf_matches_integrated_density():
    p = mixture1d()
    x = torch.linspace(-8, 8, 160_001, dtype=torch.float64)
    pdf = p.log_prob(x.unsqueeze(1)).exp()
    numeric = torch.cumulative_trapezoid(pdf, x)
    for point in (-2.0, 0.0, 0.5, 3.2):
        i = int(torch.searchsorted(x, torch.tensor(point, dtype=torch.float64)))
        assert abs(float(numeric[i - 1]) - float(mixture_cdf(p, x[i : i + 1]))) < 1e-6


def test_binned_jsd_is_zero_for_p_and_log2_for_disjoint():
    p = mixture1d()
    rng = torch.Generator().manual_seed(0)
    same = binned_jsd(p, p.sample(200_000, rng), -5, 5, bins=100)
    assert 0 <= same < 2e-3  # sampling noise only (about bins / 8n)
    far = binned_jsd(p, torch.full((1000, 1), 50.0), -5, 5, bins=100)
    assert abs(far - math.log(2)) < 1e-9


def test_trained_d_approaches_the_log_ratio_and_reads_off_the_jsd():
    p, q = gaussian(1, 0.0, 1.0), gaussian(1, 1.0, 1.5)
    D = fit_discriminator(p, q, steps=300, batch=512, width=32, depth=2, seed=0)
    r = evaluate_discriminator("g", D, p, q, (-12.0, 14.0), n=20_000)
    assert r.ratio_error < 0.15
    assert abs(r.jsd_estimate - r.jsd_exact) < 0.02
    untrained = fit_discriminator(p, q, steps=0, width=32, depth=2, seed=0)
    worse = evaluate_discriminator("g", untrained, p, q, (-12.0, 14.0), n=20_000)
    assert worse.ratio_error > 2 * r.ratio_error  # training is what made it right


def test_density_pairs_have_moderate_exact_jsd():
    from minmax.metrics import jsd_grid

    for _, p, q, bounds in density_pairs():
        jsd = jsd_grid(p, q, bounds, 401)
        assert 0.02 < jsd < math.log(2) - 0.1


def test_saturating_gradient_vanishes_when_d_wins():
    result = saturation_experiment(ring(), [0, 100], seed=0, batch=256)
    assert result.mean_logit_fake[-1] < result.mean_logit_fake[0] - 3  # D learned to reject
    # d/dD of -softplus(D) is -sigmoid(D): tiny once D(fake) << 0; the NS loss keeps ~1.
    assert result.grad_saturating[-1] < 0.1 * result.grad_saturating[0]
    assert result.grad_nonsaturating[-1] > 10 * result.grad_saturating[-1]


def test_game_pieces_use_exact_cdf_not_samples():
    p = GaussianMixture([[0.0]], [1.0])
    assert abs(float(mixture_cdf(p, torch.tensor([0.0]))) - 0.5) < 1e-12
