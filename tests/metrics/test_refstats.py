"""Reference statistics cache: keyed by every input, atomic, refuses what it cannot trust."""

from __future__ import annotations

import numpy as np
import pytest

from minmax.errors import UsageError
from minmax.metrics.refstats import cache_path, reference_key, reference_stats

KEY = {
    "dataset": "mnist",
    "split": "test",
    "extractor": "digits",
    "weights_sha256": "ab" * 32,
    "resize": "none",
    "count": 40,
}


def features(n: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3))


def test_second_call_reads_the_cache(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return features()

    first = reference_stats(KEY, compute, root=tmp_path)
    second = reference_stats(dict(reversed(list(KEY.items()))), compute, root=tmp_path)
    assert len(calls) == 1
    assert first.path == second.path == cache_path(KEY, tmp_path)
    assert first.path.parent == tmp_path / "refstats"
    for name in ("mu", "sigma", "features"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert second.key == KEY
    np.testing.assert_allclose(first.mu, features().mean(0), atol=1e-6)


def test_every_key_part_changes_the_file(tmp_path):
    paths = {cache_path(KEY, tmp_path)}
    for name, value in [("split", "train"), ("weights_sha256", "cd" * 32), ("count", 41)]:
        paths.add(cache_path({**KEY, name: value}, tmp_path))
    assert len(paths) == 4


def test_default_root_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MINMAX_CACHE", str(tmp_path / "cache"))
    assert cache_path(KEY).parent == tmp_path / "cache" / "refstats"


def test_failing_compute_leaves_no_file(tmp_path):
    def compute():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        reference_stats(KEY, compute, root=tmp_path)
    assert not list(tmp_path.rglob("*.npz"))
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_wrong_row_count_is_refused_and_not_written(tmp_path):
    with pytest.raises(ValueError, match="the key says 40"):
        reference_stats(KEY, lambda: features(39), root=tmp_path)
    assert not cache_path(KEY, tmp_path).exists()


def test_corrupted_file_is_refused(tmp_path):
    reference_stats(KEY, features, root=tmp_path)
    path = cache_path(KEY, tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UsageError, match="cannot read cached reference statistics"):
        reference_stats(KEY, features, root=tmp_path)


def test_mismatched_file_is_refused(tmp_path):
    other = {**KEY, "split": "train"}
    reference_stats(other, features, root=tmp_path)
    # A file renamed (or colliding) onto another key's name must not be used.
    cache_path(other, tmp_path).rename(cache_path(KEY, tmp_path))
    with pytest.raises(UsageError, match="reference/extractor mismatch in cached file"):
        reference_stats(KEY, features, root=tmp_path)


def test_pickled_arrays_are_not_loaded(tmp_path):
    path = cache_path(KEY, tmp_path)
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        np.savez(f, key=np.array([{"evil": 1}], dtype=object), mu=np.zeros(3))
    with pytest.raises(UsageError, match="cannot read"):
        reference_stats(KEY, features, root=tmp_path)


def test_non_json_key_is_refused(tmp_path):
    with pytest.raises(ValueError, match="plain JSON"):
        reference_stats({"dataset": object()}, features, root=tmp_path)


def test_reference_key_names_the_extractor():
    class Fake:
        name, weights_sha256, input_size, resize = "digits", "ef" * 32, (28, 28), "rule"

    key = reference_key("mnist", "test", Fake(), 10000, channels=1)
    assert key == {
        "dataset": "mnist",
        "split": "test",
        "count": 10000,
        "extractor": "digits",
        "weights_sha256": "ef" * 32,
        "input_size": [28, 28],
        "resize": "rule",
        "channels": 1,
    }
