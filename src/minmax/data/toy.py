"""Toy densities with exact ``log_prob``: the lab where GAN theory can be checked.

With a known density P, the optimal discriminator (a logit) D*(x) = log p(x)/q(x), the
Jensen-Shannon divergence and the modes a generator drops are all computable exactly, so
training runs on these can be judged against the truth instead of against a picture.

``log_prob`` always works in float64: the ring's std of 0.01 makes log densities of a few
hundred nats a short distance away, and float32 loses the differences that matter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from minmax.registry import Registry

_LOG_2PI = math.log(2.0 * math.pi)
# Rows per chunk are chosen so one chunk's (rows, K, d) difference tensor stays near this size.
_CHUNK_ELEMENTS = 1 << 22


@runtime_checkable
class Density(Protocol):
    """A distribution we can both sample and evaluate exactly."""

    dim: int

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws as an (n, dim) float32 tensor."""
        ...

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) for an (n, dim) tensor, as (n,) float64 (``-inf`` off the support)."""
        ...


def _as_float64(value: Tensor | Sequence | float, name: str) -> Tensor:
    try:
        return torch.as_tensor(value, dtype=torch.float64).detach().clone()
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{name} must be numeric: {error}") from None


def _check_points(x: Tensor, dim: int) -> Tensor:
    x = torch.as_tensor(x).to(torch.float64)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected points of shape (n, {dim}), got {tuple(x.shape)}")
    return x


def _check_count(n: int) -> None:
    if n < 0:
        raise ValueError(f"cannot draw a negative number of samples ({n})")


def chunk_rows(n_cols: int) -> int:
    """Rows per chunk so that a (rows, n_cols) intermediate stays a few tens of MB."""
    return max(1, _CHUNK_ELEMENTS // max(1, n_cols))


class GaussianMixture:
    """p(x) = sum_k w_k N(x; mu_k, s_k^2 I): isotropic components, exact log density.

    log p(x) = logsumexp_k [log w_k - |x - mu_k|^2 / (2 s_k^2) - d log s_k - (d/2) log 2 pi],
    evaluated with logsumexp so points far from every mode get a finite, correct value
    instead of log(0).
    """

    def __init__(
        self,
        means: Tensor | Sequence,
        stds: Tensor | Sequence,
        weights: Tensor | Sequence | None = None,
    ) -> None:
        means = _as_float64(means, "means")
        stds = _as_float64(stds, "stds")
        if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
            raise ValueError(f"means must have shape (K, d), K, d >= 1: got {tuple(means.shape)}")
        n_modes = means.shape[0]
        if stds.shape != (n_modes,):
            raise ValueError(f"stds must have shape ({n_modes},), got {tuple(stds.shape)}")
        if not torch.isfinite(means).all():
            raise ValueError("means must be finite")
        if not (torch.isfinite(stds).all() and (stds > 0).all()):
            raise ValueError(f"stds must be finite and positive, got {stds.tolist()}")
        if weights is None:
            weights = torch.full((n_modes,), 1.0 / n_modes, dtype=torch.float64)
        weights = _as_float64(weights, "weights")
        if weights.shape != (n_modes,):
            raise ValueError(f"weights must have shape ({n_modes},), got {tuple(weights.shape)}")
        if not (torch.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
            raise ValueError(f"weights must be finite, non-negative, not all 0: {weights.tolist()}")
        self.means = means
        self.stds = stds
        self.weights = weights / weights.sum()
        self.dim = means.shape[1]

    @property
    def n_modes(self) -> int:
        return self.means.shape[0]

    def __repr__(self) -> str:
        return f"GaussianMixture(n_modes={self.n_modes}, dim={self.dim})"

    def squared_distances(self, x: Tensor) -> Tensor:
        """|x_i - mu_k|^2 as an (n, K) float64 tensor, by explicit differences.

        Differences rather than |x|^2 - 2 x.mu + |mu|^2: the expansion cancels
        catastrophically when std << |mu| (the ring: std 0.01 at radius 1).
        """
        x = _check_points(x, self.dim)
        rows = chunk_rows(self.n_modes * self.dim)
        parts = [
            (chunk[:, None, :] - self.means[None, :, :]).square().sum(-1) for chunk in x.split(rows)
        ]
        if not parts:
            return x.new_zeros((0, self.n_modes))
        return torch.cat(parts)

    def log_prob(self, x: Tensor) -> Tensor:
        d2 = self.squared_distances(x)
        log_norm = -self.dim * (self.stds.log() + 0.5 * _LOG_2PI)
        log_w = self.weights.log()  # -inf for a zero-weight mode: logsumexp drops it
        terms = log_w + log_norm - 0.5 * d2 / self.stds.square()
        return torch.logsumexp(terms, dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Pick component k ~ Categorical(w), then x = mu_k + s_k * eps, eps ~ N(0, I)."""
        _check_count(n)
        if n == 0:
            return torch.zeros((0, self.dim), dtype=torch.float32)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn((n, self.dim), generator=generator, dtype=torch.float64)
        return (self.means[k] + self.stds[k, None] * eps).to(torch.float32)


def ring(n_modes: int = 8, radius: float = 1.0, std: float = 0.01) -> GaussianMixture:
    """PacGAN's 2-D ring: equal-weight modes at angles 2 pi k / n, k = 0..n-1.

    The end point 2 pi is excluded so all ``n_modes`` centres are distinct.
    """
    if n_modes < 1:
        raise ValueError(f"n_modes must be >= 1, got {n_modes}")
    angles = 2.0 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    return GaussianMixture(means, torch.full((n_modes,), float(std), dtype=torch.float64))


def grid(side: int = 5, spacing: float = 2.0, std: float = 0.05) -> GaussianMixture:
    """PacGAN's 2-D grid: side^2 equal-weight modes centred on 0; defaults give {-4..4 step 2}^2."""
    if side < 1:
        raise ValueError(f"side must be >= 1, got {side}")
    coords = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2.0) * spacing
    xs, ys = torch.meshgrid(coords, coords, indexing="ij")
    means = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)
    return GaussianMixture(means, torch.full((side * side,), float(std), dtype=torch.float64))


def mixture1d() -> GaussianMixture:
    """A 1-D mixture with three unequal, well-separated modes.

    Means (-2, 0.5, 3), stds (0.4, 0.6, 0.3), weights (0.3, 0.5, 0.2): neighbouring means are
    at least 2.5 apart, over 2.5 times the sum of their stds, so the density dips almost to
    zero between modes (a generator must jump gaps), while unequal weights and widths make
    "covers every mode equally" a visible mistake.
    """
    return GaussianMixture([[-2.0], [0.5], [3.0]], [0.4, 0.6, 0.3], [0.3, 0.5, 0.2])


def gaussian(dim: int = 1, mean: float = 0.0, std: float = 1.0) -> GaussianMixture:
    """N(mean * 1, std^2 I) in ``dim`` dimensions, as a one-component mixture."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    return GaussianMixture(torch.full((1, dim), float(mean), dtype=torch.float64), [float(std)])


def _spiral_angles(n: int, theta_start: float, theta_end: float) -> Tensor:
    """Angles of ``n`` points evenly spaced in arc length along r = b * theta.

    Arc length from 0 is s(theta) = (b / 2) (theta sqrt(1 + theta^2) + asinh theta), which
    increases monotonically, so bisection inverts it (b cancels).
    """

    def arc(theta: Tensor) -> Tensor:
        return theta * torch.sqrt(1.0 + theta.square()) + torch.asinh(theta)

    ends = torch.tensor([theta_start, theta_end], dtype=torch.float64)
    s_start, s_end = arc(ends).tolist()
    targets = torch.linspace(s_start, s_end, n, dtype=torch.float64)
    lo = torch.full_like(targets, theta_start)
    hi = torch.full_like(targets, theta_end)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = arc(mid) < targets
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


def spiral(
    n_modes: int = 100, turns: float = 2.0, radius: float = 4.0, std: float = 0.1
) -> GaussianMixture:
    """Equal-weight Gaussians evenly spaced (in arc length) along an Archimedean spiral.

    r = radius * theta / theta_end, theta in [pi, 2 pi turns]; starting half a turn in keeps
    centres from crowding the origin. With the defaults neighbours are about 0.24 apart,
    2.4 stds, so the density reads as a continuous curve: a thin 1-D manifold in 2-D, and
    its log_prob is still exact because it is a mixture.
    """
    if n_modes < 2:
        raise ValueError(f"n_modes must be >= 2, got {n_modes}")
    theta_end = 2.0 * math.pi * turns
    if theta_end <= math.pi:
        raise ValueError(f"turns must be > 0.5, got {turns}")
    theta = _spiral_angles(n_modes, math.pi, theta_end)
    r = radius * theta / theta_end
    means = torch.stack([r * theta.cos(), r * theta.sin()], dim=1)
    return GaussianMixture(means, torch.full((n_modes,), float(std), dtype=torch.float64))


class Checkerboard:
    """Uniform on the dark squares of a side x side board on [-half_width, half_width]^2.

    Square (i, j), counted from the lower-left corner, is dark when i + j is even. The
    density is 1 / (dark area) on the closed dark squares and 0 elsewhere, so log_prob is
    -log(area) or -inf. Closed squares mean a float32 sample rounded onto an edge still lies
    in the support. Defaults: 4 x 4 board on [-4, 4]^2, squares of side 2, dark area 32.
    """

    dim = 2

    def __init__(self, side: int = 4, half_width: float = 4.0) -> None:
        if side < 1 or half_width <= 0:
            raise ValueError(f"need side >= 1 and half_width > 0, got {side}, {half_width}")
        self.side = side
        self.half_width = float(half_width)
        self.square = 2.0 * self.half_width / side
        ij = torch.cartesian_prod(torch.arange(side), torch.arange(side))
        dark = ij[(ij.sum(1) % 2) == 0].to(torch.float64)
        self.corners = -self.half_width + self.square * dark  # lower-left corners, (n_dark, 2)
        self.log_density = -math.log(len(dark) * self.square**2)

    def __repr__(self) -> str:
        return f"Checkerboard(side={self.side}, half_width={self.half_width})"

    def log_prob(self, x: Tensor) -> Tensor:
        x = _check_points(x, self.dim)
        centres = self.corners + 0.5 * self.square
        inside = torch.zeros(len(x), dtype=torch.bool)
        for centre in centres:  # a point is in a closed square iff its L-inf distance <= side/2
            inside |= (x - centre).abs().amax(dim=1) <= 0.5 * self.square
        out = torch.full((len(x),), -math.inf, dtype=torch.float64)
        out[inside] = self.log_density
        return out

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Pick a dark square uniformly (they have equal area), then a uniform point in it."""
        _check_count(n)
        which = torch.randint(len(self.corners), (n,), generator=generator)
        u = torch.rand((n, 2), generator=generator, dtype=torch.float64)
        return (self.corners[which] + self.square * u).to(torch.float32)


TOY_DENSITIES: Registry[Callable[[], Density]] = Registry("dataset")
TOY_DENSITIES.add("ring", ring)
TOY_DENSITIES.add("grid", grid)
TOY_DENSITIES.add("mixture1d", mixture1d)
TOY_DENSITIES.add("gaussian1d", gaussian)
TOY_DENSITIES.add("spiral", spiral)
TOY_DENSITIES.add("checkerboard", Checkerboard)
