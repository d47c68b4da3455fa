"""The real data the ratio tools score on is data they did not fit to, points files included."""

import numpy as np
import pytest
import torch

from minmax.config import resolve
from minmax.errors import UsageError
from minmax.ratio.calibrate import auto_kimg
from minmax.ratio.run import held_out


def _points(tmp_path, n):
    rng = np.random.default_rng(0)
    path = tmp_path / "points.npy"
    np.save(path, (rng.standard_normal((n, 2)) * [3.0, 0.5] + [100.0, -7.0]).astype(np.float32))
    return path


def test_a_points_file_is_halved_into_disjoint_fit_and_evaluation_rows(tmp_path):
    path = _points(tmp_path, 1000)
    cfg = resolve(overrides=[f"data.name={path}"])
    data = held_out(cfg, 5000, seed=0)  # asks for more than half: gets half
    fit = data.fit.density.data
    assert data.x.shape == (500, 2) and fit.shape == (500, 2)
    rows = {tuple(r) for r in np.load(path).tolist()}
    evaluated, fitted = {tuple(r) for r in data.x.tolist()}, {tuple(r) for r in fit.tolist()}
    assert evaluated | fitted == rows and not evaluated & fitted
    assert data.description["n_fit"] == 500 and "halved" in data.description["note"]
    # The user's units: the fitting source draws raw rows, not standardised ones.
    drawn, _ = data.fit.sample(64, torch.Generator().manual_seed(0))
    assert {tuple(r) for r in drawn.tolist()} <= fitted
    again = held_out(cfg, 200, seed=0)
    assert torch.equal(again.x, held_out(cfg, 200, seed=0).x)  # seeded
    assert not torch.equal(again.x, held_out(cfg, 200, seed=1).x)


def test_a_toy_density_is_sampled_afresh(tmp_path):
    data = held_out(resolve("ring"), 300, seed=0)
    assert data.x.shape == (300, 2) and data.description["note"] == "fresh samples of P"


def test_a_points_file_too_small_to_halve(tmp_path):
    one = f"data.name={_points(tmp_path, 1)}"  # loads only unstandardised: a single point
    cfg = resolve(overrides=[one, "data.standardize=off"])
    with pytest.raises(UsageError, match="too few points"):
        held_out(cfg, 100, seed=0)


@pytest.mark.parametrize(
    "n_fit, kimg",
    [(5000, 100.0), (12_000, 240.0), (50_000, 500.0), (100, 100.0), (None, 500.0)],
)
def test_the_default_budget_is_passes_over_the_fit_rows_within_bounds(n_fit, kimg):
    # MNIST's 5,000 fit images keep the measured 100 kimg; a large points file gets 500.
    data = {"note": "..."} if n_fit is None else {"n_fit": n_fit}
    assert auto_kimg(data) == kimg
