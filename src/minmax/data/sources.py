"""One interface over every kind of training data the loop can draw from.

A source answers ``sample(n, rng, rows=None) -> (x, y)``: a batch of samples and their class
labels (None when the data has none), optionally only ``rows`` of it; ``sample_labels`` for
the classes a conditional G is asked to make; ``shape`` / ``n_classes`` for the networks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from minmax.config import DataConfig
from minmax.data.images import ImageDataset, is_image_dataset, load_images
from minmax.data.points import SUFFIXES as POINTS_SUFFIXES
from minmax.data.points import Points, resolve_toy
from minmax.data.stacked_mnist import StackedImages
from minmax.data.standardize import Standardizer, standardizer_for
from minmax.data.toy import Density
from minmax.errors import UsageError


@dataclass
class ToySource:
    """A toy density or a points file: unlabelled vectors.

    ``density`` is the data in the user's units; ``sample`` gives what the networks train on:
    standardised by ``units`` when set (``minmax.data.standardize``), else the same.
    """

    density: Density | Points
    n_classes: int = 0
    units: Standardizer | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.density.dim,)

    def sample(
        self, n: int, rng: torch.Generator, rows: slice | None = None
    ) -> tuple[Tensor, None]:
        x = self.density.sample(n, rng)
        x = x if rows is None else x[rows]
        return (x if self.units is None else self.units.encode(x)), None

    def sample_labels(self, n: int, rng: torch.Generator) -> None:
        return None


@dataclass
class ImageSource:
    """Images held as uint8 in memory (or composed per batch: stacked-mnist), labels drawn
    with the data's class frequencies."""

    dataset: ImageDataset | StackedImages

    def __post_init__(self) -> None:
        labels = self.dataset.labels
        n = self.dataset.n_classes
        self.class_freq = (
            torch.bincount(labels, minlength=n).double() / len(labels) if n else torch.zeros(0)
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return self.dataset.shape

    @property
    def n_classes(self) -> int:
        return self.dataset.n_classes

    def sample(
        self, n: int, rng: torch.Generator, rows: slice | None = None
    ) -> tuple[Tensor, Tensor | None]:
        return self.dataset.sample(n, rng, rows)

    def sample_labels(self, n: int, rng: torch.Generator) -> Tensor | None:
        if not self.n_classes:
            return None
        return torch.multinomial(self.class_freq, n, replacement=True, generator=rng)


Source = ToySource | ImageSource


def is_points_file(name: str) -> bool:
    """Whether ``name`` is a user's points file (.npy, .csv, or an .npz that is not images)."""
    return Path(name).suffix.lower() in POINTS_SUFFIXES and not is_image_dataset(name)


def resolve_data(cfg: DataConfig) -> Source:
    """The source ``data.name`` means: an image dataset, a toy density or a points file."""
    if is_image_dataset(cfg.name):
        if cfg.standardize == "on":
            raise UsageError("data.standardize=on is for points and toy densities, not images")
        dataset = load_images(
            cfg.name,
            root=cfg.root,
            split=cfg.split,
            resolution=cfg.resolution,
            channels=cfg.channels,
            download=cfg.download,
            labels=cfg.labels,
            skip_bad=cfg.skip_bad,
        )
        return ImageSource(dataset)
    path = Path(cfg.name)
    if not path.suffix and os.sep in cfg.name and not path.exists():
        raise UsageError(
            f"data folder '{cfg.name}' does not exist: give a folder of images with --data DIR"
        )
    density = resolve_toy(cfg.name)
    return ToySource(density, units=standardizer_for(density, cfg.standardize, cfg.name))
