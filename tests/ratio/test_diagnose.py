"""The mode-drop report's numbers, with the exact ratio of a known proposal."""

import math

import pytest
import torch

from minmax.data import GaussianMixture
from minmax.ratio.diagnose import group_report

ANGLES = 2 * math.pi * torch.arange(8) / 8
MEANS = 2 * torch.stack([ANGLES.cos(), ANGLES.sin()], 1)
P = GaussianMixture(MEANS, [0.1] * 8)
Q = GaussianMixture(MEANS, [0.125] * 8, [0.2, 0.05] * 4)


def test_coverage_estimates_q_over_p_per_mode_and_flags_the_light_ones():
    x = P.sample(20_000, torch.Generator().manual_seed(0))
    d = P.log_prob(x) - Q.log_prob(x)
    modes = P.squared_distances(x).argmin(1)
    top = d.argsort(descending=True)[:1000]
    rows = group_report(modes, 8, top, d, "mode")
    assert [r["mode"] % 2 for r in rows] == [1] * 4 + [0] * 4  # light modes first
    for r in rows:
        expected = 0.05 / 0.125 if r["mode"] % 2 else 0.2 / 0.125  # Q(mode) / P(mode)
        assert r["coverage"] == pytest.approx(expected, rel=0.05)
        assert r["flagged"] == (r["mode"] % 2 == 1)
    assert sum(r["n_top"] for r in rows) == 1000
    assert sum(r["top_share"] for r in rows if r["flagged"]) > 0.95  # the top is light modes
    assert sum(r["data_share"] for r in rows) == pytest.approx(1.0)
