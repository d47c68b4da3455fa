"""The linear probe on D's features reads G's class shares from G's own samples."""

import pytest
import torch
from torch import nn

from minmax.ratio.probe import LinearProbe, head_features, probe_coverage


class FeatureD(nn.Module):
    """A D whose penultimate features are its input: the probe sees the raw clusters."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, 1)

    def forward(self, x, y=None):
        return self.fc(x)


def _clusters(counts, rng, dim=4):
    """counts[k] points around the k-th corner of a simplex-like layout, labels k."""
    centres = 3.0 * torch.eye(dim)[: len(counts)]
    x = torch.cat([centres[k] + torch.randn(n, dim, generator=rng) for k, n in enumerate(counts)])
    y = torch.cat([torch.full((n,), k) for k, n in enumerate(counts)])
    return x, y


def _coverage(fake_counts, seed=0):
    rng = torch.Generator().manual_seed(seed)
    D = FeatureD(4)
    x_fit, y_fit = _clusters([600, 600, 600, 600], rng)
    x_eval, y_eval = _clusters([400, 400, 400, 400], rng)
    x_fake, _ = _clusters(fake_counts, rng)
    probe = LinearProbe(head_features(D, x_fit), y_fit, 4)
    shares = torch.full((4,), 0.25)
    return probe, probe_coverage(probe, head_features(D, x_fake), head_features(D, x_eval),
                                 y_eval, shares, seed=seed)  # fmt: skip


def test_balanced_fakes_read_at_one_and_nothing_flagged():
    probe, rows = _coverage([1000, 1000, 1000, 1000])
    for r in rows:
        assert 0.85 < r.estimate < 1.15 and r.low <= r.estimate <= r.high
        assert 0.85 < r.on_reals < 1.15 and not r.flagged


def test_a_missing_class_is_flagged_and_the_others_read_over_one():
    _, rows = _coverage([1300, 0, 1400, 1300])
    assert [r.flagged for r in rows] == [False, True, False, False]
    assert rows[1].high < 0.15
    assert all(r.estimate > 1.15 for r in rows if r.group != 1)


def test_a_half_made_class_is_within_its_interval_and_calls_repeat():
    _, rows = _coverage([1100, 500, 1100, 1100])
    truth = 500 / 3800 / 0.25
    assert rows[1].low - 0.1 < truth < rows[1].high + 0.1 and rows[1].high < 0.7
    assert rows == _coverage([1100, 500, 1100, 1100])[1]  # seeded


def test_a_discriminator_without_a_final_fc_layer():
    with pytest.raises(ValueError, match="no final 'fc' linear layer"):
        head_features(nn.Sequential(nn.Linear(4, 1)), torch.zeros(3, 4))
