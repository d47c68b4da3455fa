"""Data: toy densities with exact log_prob, and users' own point files."""

from minmax.data.points import Points, load_points, resolve_toy
from minmax.data.toy import (
    TOY_DENSITIES,
    Checkerboard,
    Density,
    GaussianMixture,
    gaussian,
    grid,
    mixture1d,
    ring,
    spiral,
)

__all__ = [
    "TOY_DENSITIES",
    "Checkerboard",
    "Density",
    "GaussianMixture",
    "Points",
    "gaussian",
    "grid",
    "load_points",
    "mixture1d",
    "resolve_toy",
    "ring",
    "spiral",
]
