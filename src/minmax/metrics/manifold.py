"""Fidelity and diversity from k-nearest-neighbour balls in feature space.

Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019): each real sample x_i
owns the ball B(x_i, r_k(x_i)) whose radius is the distance to its k-th nearest *other*
real sample; the real manifold is their union.

    precision = fraction of fake samples inside at least one real ball
    recall    = fraction of real samples inside at least one fake ball (fake radii likewise)

Density and coverage (Naeem et al., ICML 2020) reuse the real balls only (fake outliers cannot
inflate them):

    density  = (1 / (k M)) sum_j #{i : y_j in B(x_i, r_k(x_i))}   (unbounded; ~1 when P = Q)
    coverage = fraction of real samples whose ball contains at least one fake sample

"Inside" means distance <= radius (the papers' definition). Distances are Euclidean, from
``torch.cdist`` in float64 on row chunks, so 10k x 10k sets never hold a full 10k x 10k matrix
beyond a budget of a few tens of MB per step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from minmax.metrics.frechet import ArrayLike, as_feature_matrix

_CHUNK_ELEMENTS = 1 << 22  # 4M float64 distances = 32 MB per chunk


def _rows_per_chunk(n_cols: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(1, n_cols))


def _pairwise(a: Tensor, b: Tensor) -> Tensor:
    return torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist_if_necessary")


def knn_radii(x: Tensor, k: int) -> Tensor:
    """Distance from each row of x to its k-th nearest other row (self excluded)."""
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k must be between 1 and {x.shape[0] - 1} (samples - 1), got {k}")
    radii = []
    step = _rows_per_chunk(x.shape[0])
    for start in range(0, x.shape[0], step):
        chunk = x[start : start + step]
        d = _pairwise(chunk, x)
        # Each row's own distance (0, or round-off near it) is its smallest: take k + 1.
        rows = torch.arange(chunk.shape[0])
        d[rows, rows + start] = 0.0
        radii.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _pair(real: ArrayLike, fake: ArrayLike) -> tuple[Tensor, Tensor]:
    r = as_feature_matrix(real, "real features")
    f = as_feature_matrix(fake, "fake features")
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"feature sizes differ: real {r.shape[1]}, fake {f.shape[1]}")
    return torch.from_numpy(r), torch.from_numpy(f)


def _ball_counts(centers: Tensor, radii: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
    """For balls B(centers_i, radii_i) and points p_j: (#balls holding each point,
    whether each ball holds any point)."""
    counts = torch.zeros(points.shape[0], dtype=torch.long)
    ball_hit = torch.zeros(centers.shape[0], dtype=torch.bool)
    step = _rows_per_chunk(points.shape[0])
    for start in range(0, centers.shape[0], step):
        inside = (
            _pairwise(centers[start : start + step], points) <= radii[start : start + step, None]
        )
        counts += inside.sum(dim=0)
        ball_hit[start : start + step] = inside.any(dim=1)
    return counts, ball_hit


def precision_recall(real: ArrayLike, fake: ArrayLike, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of (N, d) and (M, d) features.

    Both lie in [0, 1]; P = R = 1 when the sets coincide, 0 when they are far apart.
    """
    r, f = _pair(real, fake)
    fakes_in_real, _ = _ball_counts(r, knn_radii(r, k), f)
    reals_in_fake, _ = _ball_counts(f, knn_radii(f, k), r)
    precision = (fakes_in_real > 0).double().mean()
    recall = (reals_in_fake > 0).double().mean()
    return float(precision), float(recall)


def density_coverage(real: ArrayLike, fake: ArrayLike, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) of (N, d) real and (M, d) fake features.

    Coverage lies in [0, 1]; density is >= 0 and may exceed 1 (fakes crowding dense regions).
    """
    r, f = _pair(real, fake)
    counts, covered = _ball_counts(r, knn_radii(r, k), f)
    density = counts.double().sum() / (k * f.shape[0])
    coverage = covered.double().mean()
    return float(density), float(coverage)
