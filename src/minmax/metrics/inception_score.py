"""Inception Score (Salimans et al., "Improved Techniques for Training GANs", 2016).

    IS = exp( E_x KL(p(y | x) || p(y)) ),  p(y) = E_x p(y | x)

computed on ``splits`` consecutive, equal-as-possible chunks of the samples (in the order
given, as in the original OpenAI code; shuffle beforehand if the order means something), and
reported as the mean and population std (ddof=0) of the per-chunk scores. It ranges from 1
(every sample gets the same class distribution) to K (confident, evenly spread over K
classes). It never looks at real data: it rewards confident, diverse class predictions only.
"""

from __future__ import annotations

import numpy as np

from minmax.metrics.frechet import ArrayLike, as_feature_matrix


def _xlogy_ratio(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """p log(p / q) elementwise, with 0 log 0 = 0."""
    out = np.zeros_like(p)
    seen = p > 0
    out[seen] = p[seen] * (np.log(p[seen]) - np.log(q[np.nonzero(seen)[1]]))
    return out


def inception_score(probs: ArrayLike, splits: int = 10) -> tuple[float, float]:
    """(mean, std) of exp(mean KL(p(y|x) || p(y))) over ``splits`` chunks of (N, K) probs.

    Rows must be probability vectors (non-negative, summing to 1 within 1e-3): pass softmax
    outputs, not logits.
    """
    p = as_feature_matrix(probs, "class probabilities")
    n = p.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be between 1 and the sample count {n}, got {splits}")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probabilities must be non-negative rows summing to 1 (softmax outputs)")
    scores = []
    for chunk in np.array_split(p, splits):
        marginal = chunk.mean(axis=0)
        kl = _xlogy_ratio(chunk, marginal).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
