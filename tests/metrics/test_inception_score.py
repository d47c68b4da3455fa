"""Inception Score on probability tables with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from minmax.metrics.inception_score import inception_score


def test_confident_and_uniform_over_k_classes_gives_k():
    probs = np.tile(np.eye(4), (25, 1))  # 100 one-hot rows, 25 per class, interleaved
    mean, std = inception_score(probs, splits=5)
    assert mean == pytest.approx(4.0)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_identical_predictions_give_one():
    probs = np.tile([0.2, 0.5, 0.3], (60, 1))
    assert inception_score(probs, splits=3)[0] == pytest.approx(1.0)


def test_by_hand_two_classes():
    # Half the rows (0.9, 0.1), half (0.1, 0.9): p(y) = (0.5, 0.5),
    # KL = 0.9 log 1.8 + 0.1 log 0.2 for every row.
    probs = np.array([[0.9, 0.1], [0.1, 0.9]] * 10)
    kl = 0.9 * np.log(1.8) + 0.1 * np.log(0.2)
    assert inception_score(probs, splits=1)[0] == pytest.approx(np.exp(kl))


def test_splits_in_order_and_population_std():
    # First half all class 0, second half spread over 2 classes: scores 1 and 2.
    probs = np.vstack([np.tile([1.0, 0.0], (10, 1)), np.tile(np.eye(2), (5, 1))])
    mean, std = inception_score(probs, splits=2)
    assert (mean, std) == pytest.approx((1.5, 0.5))


def test_logits_are_refused():
    with pytest.raises(ValueError, match="softmax"):
        inception_score(np.random.default_rng(0).normal(size=(10, 3)), splits=2)
    with pytest.raises(ValueError, match="splits"):
        inception_score(np.eye(3), splits=4)
