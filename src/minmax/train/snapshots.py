"""What a run shows while and after it trains: fixed-noise sample grids and the final report.

Image runs get a grid of G_ema's samples from the same z every ``grid_every_kimg`` (one row
per class for conditional models), so progress is visible frame by frame. Toy runs end with
exact mode metrics and plots (``minmax.toy_report``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from minmax.config import Config
from minmax.data.sources import ImageSource, Source, ToySource
from minmax.images import make_grid, save_grid, to_uint8

GRID_SEED_OFFSET = 20_000  # the grid's z never overlaps the training stream


def fixed_noise(z_dim: int, n_classes: int, seed: int, n: int = 64) -> tuple[Tensor, Tensor | None]:
    """z (and labels: 0..K-1 along each row) for a grid that is the same at every snapshot."""
    rng = torch.Generator().manual_seed(seed + GRID_SEED_OFFSET)
    if n_classes:
        per_class = max(1, n // n_classes)
        y = torch.arange(n_classes).repeat_interleave(per_class)
        return torch.randn(len(y), z_dim, generator=rng), y
    return torch.randn(n, z_dim, generator=rng), None


class Snapshots:
    def __init__(self, cfg: Config, source: Source, run_dir: Path) -> None:
        self.cfg, self.source, self.run_dir = cfg, source, run_dir
        self.images = isinstance(source, ImageSource)
        n_classes = source.n_classes if cfg.model.conditional else 0
        self.z, self.y = fixed_noise(cfg.model.z_dim, n_classes, cfg.train.seed)
        self.n_cols = len(self.z) // n_classes if n_classes else 8  # conditional: a row per class
        every = cfg.train.grid_every_kimg * 1000
        self.every = every if self.images and every > 0 else None
        self.next = None

    @torch.no_grad()
    def grid(self, G_ema: nn.Module, path: Path) -> Tensor:
        images = to_uint8(G_ema(self.z, self.y))
        save_grid(images, path, self.n_cols)
        return images

    def maybe(self, G_ema: nn.Module, count, log) -> None:
        """Write ``grids/kimgNNNNNN.NNN.png`` when the run has passed the next grid mark."""
        if self.every is None:
            return
        if self.next is None:
            self.next = (count.images_seen // self.every + 1) * self.every
        if count.images_seen >= self.next:
            path = self.run_dir / "grids" / f"kimg{count.kimg:010.3f}.png"
            images = self.grid(G_ema, path)
            log.image("samples", make_grid(images, self.n_cols), count)
            self.next += self.every

    def final(self, G_ema: nn.Module, D: nn.Module, count, log) -> dict:
        """The end-of-run report; returns its metrics for the summary line."""
        if isinstance(self.source, ToySource):
            from minmax.toy_report import write_report  # plotting stays off the import path

            return write_report(self.cfg, self.source.density, G_ema, D, self.run_dir)
        if self.cfg.eval.plots:
            images = self.grid(G_ema, self.run_dir / "samples.png")
            log.image("samples", make_grid(images, self.n_cols), count)
        return {}
