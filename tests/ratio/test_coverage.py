"""Per-group coverage with intervals: exact on a known ratio, blind to D's common scale, robust
to a few real samples D calls fake, and flagging only what its interval rules out."""

import math

import pytest
import torch

from minmax.data import GaussianMixture
from minmax.ratio.coverage import group_coverage, truncated_log_weights

ANGLES = 2 * math.pi * torch.arange(8) / 8
MEANS = 2 * torch.stack([ANGLES.cos(), ANGLES.sin()], 1)
P = GaussianMixture(MEANS, [0.1] * 8)
Q = GaussianMixture(MEANS, [0.125] * 8, [0.2, 0.05] * 4)  # odd modes at 0.4 of P's share


def exact(n=4000, seed=0):
    x = P.sample(n, torch.Generator().manual_seed(seed))
    return P.squared_distances(x).argmin(1), P.log_prob(x) - Q.log_prob(x)  # D* = log P/Q


def test_with_the_exact_ratio_every_interval_holds_the_truth_and_light_modes_are_flagged():
    modes, d = exact()
    rows = group_coverage(modes, d, 8, n_bootstrap=400, level=0.99)  # 8 intervals: all hold
    for r in rows:
        truth = 0.05 / 0.125 if r.group % 2 else 0.2 / 0.125
        assert r.low < truth < r.high and r.low < r.estimate < r.high
        assert r.flagged == (r.group % 2 == 1)
        assert 0.5 * r.n_real < r.ess <= r.n_real


def test_an_overconfident_d_shifts_the_plain_mean_not_the_estimate():
    modes, d = exact()
    plain = group_coverage(modes, d, 8, n_bootstrap=200)
    shifted = group_coverage(modes, d + 3.0, 8, n_bootstrap=200)  # D says "real" e^3 × too much
    for a, b in zip(plain, shifted, strict=True):
        assert (a.estimate, a.low, a.high) == pytest.approx((b.estimate, b.low, b.high))
        assert b.raw == pytest.approx(a.raw * math.exp(-3.0))
    assert sum(r.flagged for r in shifted) == 4  # a plain mean would flag all eight


def test_a_few_real_samples_d_calls_fake_do_not_decide_the_coverage():
    """A balanced G (D ~ noise around 0) where D calls three real images of class 0 fake
    with D = −20: their plain weights (e^20 each) dominate, the truncated ones do not."""
    gen = torch.Generator().manual_seed(1)
    groups = torch.arange(5000) % 10
    d = 0.3 * torch.randn(5000, generator=gen)
    d[[0, 10, 20]] = -20.0
    rows = group_coverage(groups, d, 10, n_bootstrap=300)
    assert rows[0].raw > 1e5  # the plain mean: class 0 "covered" 100,000 times over
    assert rows[0].estimate < 1.5
    assert all(0.8 < r.estimate < 1.2 for r in rows[1:])
    assert not any(r.flagged for r in rows)


def test_truncation_caps_weights_at_root_n_times_their_median():
    log_w = truncated_log_weights(torch.tensor([0.0] * 99 + [-50.0]))  # one weight e^50
    assert float(log_w.max()) == pytest.approx(0.5 * math.log(100))  # w ≤ √100 · median(1)
    assert float(log_w.min()) == 0.0


def test_a_group_with_few_samples_gets_a_wide_interval_and_is_not_flagged_on_noise():
    """Forty samples in the group, its true coverage 0.6 (above the 0.5 flag): its interval is
    far wider than that of a group of 4,000, holds the truth, and nothing is flagged."""
    gen = torch.Generator().manual_seed(2)
    groups = torch.cat([torch.zeros(40), torch.ones(4000)]).long()
    d = 0.5 * torch.randn(4040, generator=gen)
    d[:40] += math.log(1 / 0.6)  # w = e^{-D}: 0.6 times the others on average
    rows = group_coverage(groups, d, 2, n_bootstrap=500)
    width = [r.high - r.low for r in rows]
    assert width[0] > 4 * width[1] and rows[0].low < 0.6 < rows[0].high
    assert not rows[0].flagged


def test_an_empty_group_is_nan_and_unflagged_and_calls_repeat_exactly():
    modes, d = exact(800)
    keep = modes != 3
    rows = group_coverage(modes[keep], d[keep], 8, n_bootstrap=100, seed=5)
    assert rows[3].n_real == 0 and math.isnan(rows[3].estimate) and not rows[3].flagged
    again = group_coverage(modes[keep], d[keep], 8, n_bootstrap=100, seed=5)
    assert [r.as_dict() for r in rows[:3]] == [r.as_dict() for r in again[:3]]


def test_labels_and_logits_must_pair_up():
    with pytest.raises(ValueError, match="3 group labels for 4 logits"):
        group_coverage(torch.zeros(3).long(), torch.zeros(4), 1)
