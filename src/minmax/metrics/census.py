"""Class census of generated samples: the labelled-data analogue of mode coverage.

A classifier trained on the real data (e.g. the digits feature net) labels each generated
sample by its argmax class. Rule for "covered": class k is covered when it receives at least
``min_share`` (default 10%) of the samples the data distribution would give it,

    count_k >= max(1, min_share * N * p_k),

so a class hit by a handful of stray samples out of thousands does not count, and rare classes
are judged against their own expected count. The spread over classes is compared with the data
by KL(census || data) = sum_k q_k log(q_k / p_k), q = counts / N (0 log 0 = 0; inf if a class
the data never has gets samples), as the VEEGAN/PacGAN reverse KL does for mixture modes.
"""

from __future__ import annotations

import math

import numpy as np

from minmax.metrics.frechet import ArrayLike, as_feature_matrix, as_float64


def class_census(probs: ArrayLike, data_class_freq: ArrayLike, min_share: float = 0.1) -> dict:
    """Per-class argmax counts of (N, K) probs against the data's class frequencies (K,).

    Returns ``{"n_samples", "n_classes", "counts", "classes_covered", "kl_to_data",
    "min_share", "rule"}``: plain JSON-ready values (``kl_to_data`` may be ``inf``).
    ``data_class_freq`` may be counts or frequencies; it is normalised to sum to 1.
    """
    p = as_feature_matrix(probs, "class probabilities")
    freq = as_float64(data_class_freq)
    n, n_classes = p.shape
    if freq.shape != (n_classes,):
        raise ValueError(f"data_class_freq must have shape ({n_classes},), got {freq.shape}")
    if (freq < 0).any() or freq.sum() <= 0:
        raise ValueError("data_class_freq must be non-negative with a positive sum")
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    data = freq / freq.sum()
    counts = np.bincount(p.argmax(axis=1), minlength=n_classes)
    expected = data * n
    covered = (counts >= np.maximum(1.0, min_share * expected)) & (data > 0)
    q = counts / n
    seen = q > 0
    if (data[seen] == 0).any():
        kl = math.inf
    else:
        kl = float((q[seen] * (np.log(q[seen]) - np.log(data[seen]))).sum())
    return {
        "n_samples": int(n),
        "n_classes": int(n_classes),
        "counts": [int(c) for c in counts],
        "classes_covered": int(covered.sum()),
        "kl_to_data": kl,
        "min_share": float(min_share),
        "rule": f"covered: argmax count >= max(1, {min_share:g} x the data's expected count)",
    }
