"""Reference statistics, computed once per protocol and cached on disk.

A score compares generated features with the reference set's, so the reference side (tens of
thousands of images through a feature net) is worth caching -- but only under a key that names
every input that changes it: dataset, split, feature extractor and its weights hash, resize
rule, sample count (``reference_key`` builds it). The file is

    root/refstats/<sha256 of the canonical JSON of the key>.npz

holding ``mu``, ``sigma`` (float64), ``features`` (float32, what feature nets produce) and
the key JSON itself, which is compared on load,
so a hash collision, a hand-renamed file or a stale format is refused rather than used. It is
written atomically and read with ``allow_pickle=False`` (stylegan2-ada's ``metric_utils``
caches the same way, with pickles).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minmax.errors import UsageError
from minmax.metrics.features import FeatureExtractor
from minmax.metrics.files import atomic_write, default_root
from minmax.metrics.frechet import as_feature_matrix, feature_stats

FORMAT_VERSION = 1


@dataclass(frozen=True)
class RefStats:
    """Reference features (N, d) and their Gaussian fit, with the key that produced them."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray
    key: dict
    path: Path


def reference_key(
    dataset: str, split: str, extractor: FeatureExtractor, count: int, **extra
) -> dict:
    """The cache key for ``count`` reference images of ``dataset``/``split`` through
    ``extractor`` (its name, weights hash, input size and resize rule); ``extra`` adds any
    other input that changes the features (e.g. a resolution or channel conversion)."""
    return {
        "dataset": dataset,
        "split": split,
        "count": int(count),
        "extractor": extractor.name,
        "weights_sha256": extractor.weights_sha256,
        "input_size": list(extractor.input_size),
        "resize": extractor.resize,
        **extra,
    }


def canonical_json(key_parts: dict) -> str:
    """Sorted keys, no whitespace: equal dicts give equal strings (hence equal hashes)."""
    try:
        return json.dumps(
            {"format": FORMAT_VERSION, **key_parts}, sort_keys=True, separators=(",", ":")
        )
    except TypeError as err:
        raise ValueError(f"reference key parts must be plain JSON values: {err}") from None


def cache_path(key_parts: dict, root: Path | None = None) -> Path:
    digest = hashlib.sha256(canonical_json(key_parts).encode()).hexdigest()
    return Path(root if root is not None else default_root()) / "refstats" / f"{digest}.npz"


def _read(path: Path, key_json: str, key_parts: dict) -> RefStats:
    try:
        with np.load(path, allow_pickle=False) as data:
            stored_key = str(data["key"])
            arrays = {name: data[name] for name in ("mu", "sigma", "features")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise UsageError(
            f"cannot read cached reference statistics '{path}' ({err}); delete it to recompute"
        ) from None
    if stored_key != key_json:
        raise UsageError(
            f"reference/extractor mismatch in cached file '{path}': it holds {stored_key}, "
            f"wanted {key_json}; delete it to recompute"
        )
    arrays["features"] = arrays["features"].astype(np.float64)
    return RefStats(**arrays, key=dict(key_parts), path=path)


def reference_stats(
    key_parts: dict, compute: Callable[[], np.ndarray], root: Path | None = None
) -> RefStats:
    """Load the cached statistics for ``key_parts``, or call ``compute()`` for the (N, d)
    reference features, fit (mu, sigma) and cache all three. ``root`` defaults to
    ``default_root()``. If ``compute`` raises, nothing is written."""
    key_json = canonical_json(key_parts)
    path = cache_path(key_parts, root)
    if path.exists():
        return _read(path, key_json, key_parts)
    # Stored as float32, what feature nets produce; statistics from the stored values, so a
    # fresh result and a cached one are identical.
    features = as_feature_matrix(compute(), "reference features").astype(np.float32)
    count = key_parts.get("count")
    if count is not None and features.shape[0] != count:
        raise ValueError(f"compute() returned {features.shape[0]} rows, the key says {count}")
    mu, sigma = feature_stats(features.astype(np.float64))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, mu=mu, sigma=sigma, features=features, key=np.array(key_json))

    atomic_write(path, write)
    return RefStats(
        mu=mu, sigma=sigma, features=features.astype(np.float64), key=dict(key_parts), path=path
    )


def load_cached(path: str | Path, extractor: FeatureExtractor) -> RefStats:
    """Reference statistics from a cache file given by path (``minmax evaluate --ref X.npz``),
    refused unless they were made with ``extractor`` (name, weights hash, input, resize)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            key = json.loads(str(data["key"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise UsageError(f"cannot read cached reference statistics '{path}' ({err})") from None
    wanted = reference_key(key.get("dataset", ""), key.get("split", ""), extractor, 0)
    fields = ("extractor", "weights_sha256", "input_size", "resize")
    if any(key.get(name) != wanted[name] for name in fields):
        raise UsageError(
            f"reference/extractor mismatch in cached file '{path}': it was made with "
            f"{key.get('extractor')} ({str(key.get('weights_sha256'))[:12]}…), "
            f"not {extractor.name} ({extractor.weights_sha256[:12]}…)"
        )
    return _read(path, canonical_json(key), key)


def is_cached_stats(path: str | Path) -> bool:
    """True for an .npz holding mu, sigma, features and key (a reference-statistics file)."""
    path = Path(path)
    if path.suffix != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            return {"mu", "sigma", "features", "key"} <= set(data.files)
    except (OSError, ValueError, zipfile.BadZipFile):
        return False
