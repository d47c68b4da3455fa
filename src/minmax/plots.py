"""PNG plots for points and discriminators (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

Field = Callable[[Tensor], Tensor]  # (n, d) points -> (n,) values


def bounds_of(points: Tensor, margin: float = 0.15) -> list[tuple[float, float]]:
    lo, hi = points.min(0).values, points.max(0).values
    pad = (hi - lo).clamp_min(1e-3) * margin
    return [(float(a), float(b)) for a, b in zip(lo - pad, hi + pad, strict=True)]


def plot_points(real: Tensor, fake: Tensor, path: Path, title: str = "") -> None:
    """2-D: scatter of real vs generated; 1-D: overlaid histograms."""
    fig, ax = plt.subplots(figsize=(5, 5) if real.shape[1] == 2 else (6, 3.5))
    if real.shape[1] == 1:
        bins = np.linspace(*bounds_of(torch.cat([real, fake]))[0], 150)
        ax.hist(real[:, 0].numpy(), bins, density=True, alpha=0.5, label="real (P)")
        ax.hist(fake[:, 0].numpy(), bins, density=True, alpha=0.5, label="generated (Q_G)")
        ax.set_xlabel("x")
    else:
        ax.scatter(*real[:, :2].T.numpy(), s=2, alpha=0.4, label="real (P)")
        ax.scatter(*fake[:, :2].T.numpy(), s=2, alpha=0.4, label="generated (Q_G)")
        ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.no_grad()
def plot_fields(
    fields: dict[str, Field],
    bounds: list[tuple[float, float]],
    path: Path,
    clip: float = 8.0,
    mask: Field | None = None,
    points: Tensor | None = None,
    masked: tuple[str, ...] = (),
) -> None:
    """Draw scalar fields side by side (2-D: filled contours) or on one axis (1-D: lines).

    Values are clipped to ±clip. The ``masked`` panels are left blank where ``mask`` is False
    (negligible density), since a log ratio there is a ratio of two tails and says nothing.
    """
    if len(bounds) == 1:
        x = torch.linspace(*bounds[0], 600).unsqueeze(1)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name, field in fields.items():
            ax.plot(x[:, 0].numpy(), field(x).clamp(-clip, clip).numpy(), label=name)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel("x")
        ax.legend()
    else:
        n = 150
        xs = torch.linspace(*bounds[0], n)
        ys = torch.linspace(*bounds[1], n)
        grid = torch.cartesian_prod(xs, ys)
        keep = mask(grid).reshape(n, n).T.numpy() if mask is not None else None
        fig, axes = plt.subplots(1, len(fields), figsize=(5 * len(fields), 4.4), squeeze=False)
        for ax, (name, field) in zip(axes[0], fields.items(), strict=True):
            values = field(grid).double().clamp(-clip, clip).reshape(n, n).T.numpy()
            if keep is not None and name in masked:
                values = np.where(keep, values, np.nan)
            image = ax.contourf(
                xs.numpy(), ys.numpy(), values, levels=30, cmap="RdBu_r", vmin=-clip, vmax=clip
            )
            fig.colorbar(image, ax=ax, shrink=0.85)
            if points is not None:
                ax.scatter(*points[:, :2].T.numpy(), s=0.5, c="k", alpha=0.3)
            ax.set_title(name)
            ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(
    curves: dict[str, tuple[list[float], list[float]]],
    path: Path,
    xlabel: str,
    ylabel: str,
    logy: bool = False,
    title: str = "",
) -> None:
    """Line plot of named (x, y) series."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, (xs, ys) in curves.items():
        ax.plot(xs, ys, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
