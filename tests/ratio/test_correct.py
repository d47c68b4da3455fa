"""DRS, MH and SIR against a fixed, known proposal Q with the exact ratio D = log P/Q.

Q has P's eight modes, but half of them get a quarter of P's weight and every mode is 25%
wider. Corrected samples must pass two seeded goodness-of-fit tests against P (mode counts:
chi-square; distance to the nearest mode: Kolmogorov-Smirnov against its exact law), and the
uncorrected proposal must fail both: the tests can tell a wrong sampler.
"""

import math

import pytest
import torch

from minmax.data import GaussianMixture
from minmax.errors import UsageError
from minmax.ratio.correct import correct, drs_logits, drs_shift

ANGLES = 2 * math.pi * torch.arange(8) / 8
MEANS = 2 * torch.stack([ANGLES.cos(), ANGLES.sin()], 1)
STD = 0.1
P = GaussianMixture(MEANS, [STD] * 8)
Q = GaussianMixture(MEANS, [1.25 * STD] * 8, [0.2, 0.05] * 4)  # sup p/q = 2.5 · 1.25² ≈ 3.9
ALPHA = 1e-3  # a correct sampler fails a test with this probability (per seed)


def propose(n, rng):
    x = Q.sample(n, rng)
    return x, torch.arange(n) % 3  # labels ride along: selection must keep them paired


def exact_log_ratio(x, y):
    return P.log_prob(x) - Q.log_prob(x)


def chi_square_p(x):
    """P-value of the nearest-mode counts against P's weights (df = 7)."""
    counts = torch.bincount(P.squared_distances(x).argmin(1), minlength=8).double()
    expected = P.weights * len(x)
    stat = float(((counts - expected) ** 2 / expected).sum())
    return float(torch.special.gammaincc(torch.tensor(3.5), torch.tensor(stat / 2)))


def ks_p(x):
    """P-value of r²/(2σ²) (r: distance to the nearest mode), Exp(1) under P (2-D Gaussian)."""
    u = (P.squared_distances(x).min(1).values / (2 * STD**2)).sort().values
    n = len(u)
    cdf = 1 - torch.exp(-u)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    d = float(torch.maximum(i / n - cdf, cdf - (i - 1) / n).max())
    t = d * (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n))  # Stephens' small-n correction
    return min(1.0, 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * t * t) for k in range(1, 100)))


def follows_p(x):
    return chi_square_p(x) > ALPHA and ks_p(x) > ALPHA


SETTINGS = {"drs": {}, "mh": {"chain_length": 40}, "sir": {"pool_factor": 20}}


@pytest.mark.parametrize("method", ["drs", "mh", "sir"])
def test_corrected_samples_follow_p_and_the_proposal_does_not(method):
    n = 3000
    x, y, stats = correct(method, propose, exact_log_ratio, n, seed=1, **SETTINGS[method])
    assert x.shape == (n, 2) and y.shape == (n,)
    assert follows_p(x), (chi_square_p(x), ks_p(x))
    raw, _, base = correct("none", propose, exact_log_ratio, n, seed=1)
    assert chi_square_p(raw) < ALPHA and ks_p(raw) < ALPHA
    assert not follows_p(raw)
    # Cost bookkeeping: every proposal counts, the baseline costs one G call per sample.
    assert base.g_evals_per_sample == 1.0 and base.acceptance_rate == 1.0
    assert stats.n_kept == n and stats.g_evals_per_sample == stats.n_proposed / n > 1
    assert 0 < stats.acceptance_rate <= 1 and stats.seconds >= 0
    if method == "mh":
        assert stats.n_proposed == n * 41
    if method == "sir":
        assert stats.n_proposed == 20 * n and stats.details["ess"] <= 20 * n


def test_exact_drs_accepts_at_rate_one_over_m():
    """γ = 0 with the exact ratio is rejection sampling: acceptance E_Q[p/(Mq)] = 1/M."""
    _, _, stats = correct("drs", propose, exact_log_ratio, 4000, seed=2)
    m = math.exp(stats.details["d_max"])
    assert stats.details["gamma"] == 0.0
    assert abs(stats.acceptance_rate - 1 / m) < 0.02
    assert m == pytest.approx(2.5 * 1.25**2, rel=0.05)  # the burn-in finds sup p/q


@pytest.mark.parametrize("target", [0.1, 0.3, 0.7])
def test_drs_hits_its_acceptance_target(target):
    _, _, stats = correct("drs", propose, exact_log_ratio, 5000, seed=3, accept_target=target)
    assert abs(stats.acceptance_rate - target) < 0.02
    assert (stats.details["gamma"] > 0) == (target < 1 / 3.9)  # γ < 0 accepts more than 1/M


def test_a_shift_away_from_gamma_zero_biases_drs_and_the_test_sees_it():
    """γ > 0 (target 0.1 < 1/M) under-weights the top of the ratio: not P any more."""
    x, _, stats = correct("drs", propose, exact_log_ratio, 3000, seed=1, accept_target=0.1)
    assert stats.details["gamma"] > 1 and not follows_p(x)


def test_drs_target_one_keeps_every_proposal():
    x, y, stats = correct("drs", propose, exact_log_ratio, 500, seed=4, accept_target=1.0)
    raw, raw_y = propose(10_000, torch.Generator().manual_seed(4))
    assert torch.equal(x, raw[:500]) and torch.equal(y, raw_y[:500])
    assert stats.acceptance_rate == 1.0


def test_labels_stay_with_their_samples():
    """Each proposal's label is a function of its mode: after selection it still is."""

    def labelled(n, rng):
        x = Q.sample(n, rng)
        return x, P.squared_distances(x).argmin(1)

    for method in ("drs", "mh", "sir"):
        x, y, _ = correct(method, labelled, exact_log_ratio, 500, seed=5, **SETTINGS[method])
        assert torch.equal(y, P.squared_distances(x).argmin(1)), method


@pytest.mark.parametrize("method", ["drs", "mh", "sir"])
def test_seeded(method):
    a = correct(method, propose, exact_log_ratio, 300, seed=6, **SETTINGS[method])
    b = correct(method, propose, exact_log_ratio, 300, seed=6, **SETTINGS[method])
    assert torch.equal(a[0], b[0])


def test_drs_logit_is_exact_rejection_at_gamma_zero():
    """sigmoid(D − D_M − log(1 − e^{D − D_M})) = e^{D − D_M} (ε → 0)."""
    d = torch.tensor([-5.0, -1.0, -0.1], dtype=torch.float64)
    prob = torch.sigmoid(drs_logits(d, 0.0, 1e-12))
    torch.testing.assert_close(prob, d.exp())
    f = drs_logits(torch.randn(1000, dtype=torch.float64), 4.0, 1e-6)
    gamma = drs_shift(f, 0.25)
    assert float(torch.sigmoid(f - gamma).mean()) == pytest.approx(0.25, abs=1e-6)


@pytest.mark.parametrize("target", [0.0, -0.5, 1.5, math.nan])
def test_acceptance_target_outside_zero_one(target):
    with pytest.raises(UsageError, match=r"--accept-target must be in \(0, 1\]"):
        correct("drs", propose, exact_log_ratio, 10, accept_target=target)


def test_other_bad_input():
    with pytest.raises(UsageError, match="drs only"):
        correct("mh", propose, exact_log_ratio, 10, accept_target=0.5)
    with pytest.raises(UsageError, match="positive"):
        correct("drs", propose, exact_log_ratio, 0)
    with pytest.raises(UsageError, match="chain-length"):
        correct("mh", propose, exact_log_ratio, 10, chain_length=0)
    with pytest.raises(UsageError, match="unknown correction"):
        correct("rejection", propose, exact_log_ratio, 10)
