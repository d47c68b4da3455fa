"""Class census: counts, the coverage rule and KL to the data's class distribution."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from minmax.metrics.census import class_census


def one_hot(labels, k=10):
    return np.eye(k)[np.asarray(labels)]


def test_matching_the_data_covers_every_class_with_zero_kl():
    probs = one_hot(np.repeat(np.arange(10), 100))
    census = class_census(probs, np.full(10, 0.1))
    assert census["counts"] == [100] * 10
    assert census["classes_covered"] == 10
    assert census["kl_to_data"] == pytest.approx(0.0, abs=1e-12)
    json.dumps(census)  # plain values


def test_collapse_onto_two_classes():
    probs = one_hot([3] * 500 + [7] * 500)
    census = class_census(probs, np.full(10, 0.1))
    assert census["classes_covered"] == 2
    assert census["kl_to_data"] == pytest.approx(math.log(5))


def test_a_handful_of_stray_samples_does_not_cover_a_class():
    # 1000 samples, uniform data: expected 100 per class, so covering needs >= 10.
    labels = [0] * 9 + [1] * 10 + [2] * 981
    census = class_census(one_hot(labels), np.ones(10))  # counts are normalised too
    assert census["counts"][:3] == [9, 10, 981]
    assert census["classes_covered"] == 2


def test_rare_classes_are_judged_by_their_own_frequency():
    freq = np.array([0.98, 0.02])
    probs = one_hot([0] * 999 + [1], k=2)
    assert class_census(probs, freq)["classes_covered"] == 1  # class 1 expects 20: needs 2
    assert class_census(probs, freq, min_share=0.05)["classes_covered"] == 2  # needs 1


def test_samples_in_a_class_the_data_lacks_give_infinite_kl():
    census = class_census(one_hot([0, 1, 2], k=3), np.array([0.5, 0.5, 0.0]))
    assert census["kl_to_data"] == math.inf
    assert census["classes_covered"] == 2


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        class_census(one_hot([0, 1]), np.ones(3))
