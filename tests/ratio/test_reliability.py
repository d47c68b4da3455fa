"""Reliability checks of D: a D equal to log P/Q is calibrated; an offset or a scale is not,
and a Platt step fit on half of the data finds and undoes it on the other half."""

import math

import pytest
import torch

from minmax.ratio.reliability import fit_platt, platt_check, plot_reliability, reliability, v_d

MU = 1.0  # P = N(+MU, 1), Q = N(−MU, 1) in one dimension: log P/Q = 2·MU·x


def exact_logits(n=20_000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x_p, x_q = torch.randn(n, generator=gen) + MU, torch.randn(n, generator=gen) - MU
    return 2 * MU * x_p, 2 * MU * x_q


def test_the_exact_log_ratio_is_calibrated():
    p, q = exact_logits()
    r = reliability(p, q)
    assert r["ece"] < 0.01
    for b in r["bins"]:
        assert b["low"] <= b["mean_prob"] <= b["high"]
        assert b["real_share"] == pytest.approx(b["mean_prob"], abs=0.03)


@pytest.mark.parametrize(("scale", "offset"), [(1.0, 2.0), (3.0, 0.0), (0.4, -1.0)])
def test_an_offset_or_scale_is_miscalibrated_and_platt_undoes_it(scale, offset):
    p, q = exact_logits()
    bad_p, bad_q = scale * p + offset, scale * q + offset
    assert reliability(bad_p, bad_q)["ece"] > 0.05
    a, b = fit_platt(bad_p, bad_q)
    assert a == pytest.approx(1 / scale, rel=0.05) and b == pytest.approx(-offset / scale, abs=0.05)
    check = platt_check(bad_p, bad_q)
    assert check["v_d_platt"] < check["v_d"] and check["ece_platt"] < 0.02 < check["ece"]
    assert check["n_fit"] + check["n_test"] == 40_000


def test_v_d_is_2_log_2_for_a_d_that_cannot_tell():
    assert v_d(torch.zeros(5), torch.zeros(7)) == pytest.approx(2 * math.log(2))


def test_unequal_sides_count_equally_and_empty_bins_are_marked():
    p, q = torch.full((10,), 3.0), torch.full((1000,), -3.0)  # sure and right on both sides
    r = reliability(p, q)
    occupied = [b for b in r["bins"] if b["n"]]
    assert len(occupied) == 2 and sum(b["n"] for b in occupied) == 1010
    assert r["ece"] == pytest.approx(1 - torch.tensor(3.0).sigmoid().item(), abs=1e-6)
    assert all(math.isnan(b["mean_prob"]) for b in r["bins"] if not b["n"])


def test_the_diagram_is_drawn(tmp_path):
    p, q = exact_logits(2000)
    plot_reliability({"exact": reliability(p, q), "offset": reliability(p + 2, q + 2)},
                     tmp_path / "r.png")  # fmt: skip
    assert (tmp_path / "r.png").stat().st_size > 5000
