"""Exact divergences between known densities: the numbers GAN theory predicts.

With D a logit, the D minimising V_D is D*(x) = log p(x) - log q(x) (the probability
sigmoid(D*) = p / (p + q)), and there V_D = 2 log 2 - 2 JSD(P, Q). These helpers
compute the right-hand sides from ``log_prob`` alone, so a trained D and the measured value
can be checked against them.

All work is in log space (float64). Where a density is 0 (log density -inf, e.g. the
Checkerboard off its squares) its term contributes 0, by the convention 0 log 0 = 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from minmax.data.toy import Density

_LOG_2 = math.log(2.0)

Bounds1D = tuple[float, float]
Bounds = Bounds1D | tuple[Bounds1D, Bounds1D]


def log_ratio(p: Density, q: Density, x: Tensor) -> Tensor:
    """log p(x) - log q(x) in float64: the logit of the optimal discriminator D*.

    Where both densities are 0 the ratio is undefined; we return 0 (D* = 1/2) there, since
    neither P nor Q ever puts a sample at such a point. +-inf where only one is 0.
    """
    log_p, log_q = p.log_prob(x), q.log_prob(x)
    both_zero = torch.isneginf(log_p) & torch.isneginf(log_q)
    return torch.where(both_zero, torch.zeros_like(log_p), log_p - log_q)


def _half_term(log_a: Tensor, log_mix: Tensor) -> Tensor:
    """log(2a / (a + b)) given log a and log(a + b); 0 where a = 0 (so a * it = 0)."""
    zero = torch.isneginf(log_a)
    safe = torch.where(zero, torch.zeros_like(log_a), log_a - log_mix)
    return torch.where(zero, torch.zeros_like(log_a), _LOG_2 + safe)


def _jsd_integrand(log_p: Tensor, log_q: Tensor) -> Tensor:
    """1/2 p log(2p / (p+q)) + 1/2 q log(2q / (p+q)), >= 0 pointwise, 0 where p = q = 0."""
    log_mix = torch.logaddexp(log_p, log_q)
    return 0.5 * (
        log_p.exp() * _half_term(log_p, log_mix) + log_q.exp() * _half_term(log_q, log_mix)
    )


def _midpoints(lo: float, hi: float, n_points: int) -> tuple[Tensor, float]:
    if not hi > lo:
        raise ValueError(f"bounds must satisfy lo < hi, got ({lo}, {hi})")
    step = (hi - lo) / n_points
    return lo + step * (torch.arange(n_points, dtype=torch.float64) + 0.5), step


def _parse_bounds(bounds: Bounds | Sequence) -> list[tuple[float, float]]:
    first = bounds[0]
    if isinstance(first, Sequence | Tensor):
        axes = [tuple(float(v) for v in axis) for axis in bounds]
    else:
        axes = [tuple(float(v) for v in bounds)]
    if len(axes) not in (1, 2) or any(len(axis) != 2 for axis in axes):
        raise ValueError(f"bounds must be (lo, hi) or ((xlo, xhi), (ylo, yhi)), got {bounds}")
    return axes


def jsd_grid(p: Density, q: Density, bounds: Bounds, n_points: int) -> float:
    """JSD(P, Q) in nats by the midpoint rule on a regular grid of n_points per axis.

    JSD = integral of 1/2 p log(2p/(p+q)) + 1/2 q log(2q/(p+q)), in [0, log 2].
    The midpoint rule (cell centres) is as accurate as the trapezoid rule for smooth
    densities that vanish at the bounds and never evaluates exactly on a support edge; when
    a density's jumps fall on cell borders (the Checkerboard, with bounds and n_points
    aligned to its squares) no cell straddles a jump, so the error stays O(h^2), not O(h).
    Mass outside ``bounds`` is ignored, so bounds must cover both densities.
    """
    axes = _parse_bounds(bounds)
    if len(axes) != p.dim or p.dim != q.dim:
        raise ValueError(f"bounds cover {len(axes)} axes but p, q have dims {p.dim}, {q.dim}")
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    grids = [_midpoints(lo, hi, n_points) for lo, hi in axes]
    cell = math.prod(step for _, step in grids)
    if len(grids) == 1:
        x = grids[0][0][:, None]
        return float(_jsd_integrand(p.log_prob(x), q.log_prob(x)).sum() * cell)
    xs, ys = grids[0][0], grids[1][0]
    total = 0.0
    rows = max(1, (1 << 20) // n_points)  # a band of grid rows at a time bounds memory
    for start in range(0, n_points, rows):
        band = torch.cartesian_prod(xs[start : start + rows], ys)
        total += float(_jsd_integrand(p.log_prob(band), q.log_prob(band)).sum())
    return total * cell


def jsd_monte_carlo(
    p: Density, q: Density, n: int, generator: torch.Generator | None = None
) -> tuple[float, float]:
    """(estimate, standard error) of JSD(P, Q) in nats from n samples of each.

    JSD = 1/2 E_P[log 2p/(p+q)] + 1/2 E_Q[log 2q/(p+q)]; the two sample means are
    independent, so SE^2 = (Var_P[f_P] + Var_Q[f_Q]) / (4 n).
    """
    if n < 2:
        raise ValueError(f"need n >= 2 samples for a standard error, got {n}")
    if p.dim != q.dim:
        raise ValueError(f"p and q have different dims: {p.dim}, {q.dim}")
    x_p = p.sample(n, generator)
    x_q = q.sample(n, generator)
    log_p_at_p, log_q_at_p = p.log_prob(x_p), q.log_prob(x_p)
    log_p_at_q, log_q_at_q = p.log_prob(x_q), q.log_prob(x_q)
    f_p = _half_term(log_p_at_p, torch.logaddexp(log_p_at_p, log_q_at_p))
    f_q = _half_term(log_q_at_q, torch.logaddexp(log_p_at_q, log_q_at_q))
    estimate = 0.5 * (f_p.mean() + f_q.mean())
    standard_error = torch.sqrt((f_p.var() + f_q.var()) / (4 * n))
    return float(estimate), float(standard_error)
