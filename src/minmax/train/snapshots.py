"""What a run shows while and after it trains: fixed-noise sample grids and the final report.

Image runs get a grid of G_ema's samples from the same z every ``grid_every_kimg`` (one row
per class for conditional models), so progress is visible frame by frame. Toy runs end with
exact mode metrics and plots (``minmax.toy_report``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from minmax.config import Config
from minmax.data.sources import ImageSource, Source, ToySource
from minmax.data.standardize import InUserUnits
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
        self.scorer = Scorer(cfg) if self.images and cfg.eval.metrics else None

    @torch.no_grad()
    def grid(self, G_ema: nn.Module, path: Path) -> Tensor:
        device = next(G_ema.parameters(), torch.empty(0)).device
        y = None if self.y is None else self.y.to(device)
        images = to_uint8(G_ema(self.z.to(device), y).cpu())
        save_grid(images, path, self.n_cols)
        return images

    @property
    def score(self) -> float | None:
        """The latest score of G_ema (lower is better), for keeping the best checkpoint."""
        return None if self.scorer is None else self.scorer.last

    @torch.no_grad()
    def spread_check(self, G_ema: nn.Module, count) -> tuple[Tensor, Tensor]:
        """G_ema's samples on the fixed noise and as many real ones (a stream apart from
        training's), for the mode-collapse warning."""
        device = next(G_ema.parameters(), torch.empty(0)).device
        y = None if self.y is None else self.y.to(device)
        fake = G_ema(self.z.to(device), y).float().cpu()
        real, _ = self.source.sample(len(fake), torch.Generator().manual_seed(count.step))
        return fake, real

    def maybe(self, G_ema: Callable[[], nn.Module], count, log) -> None:
        """Write ``grids/kimgNNNNNN.NNN.png`` when the run has passed the next grid mark,
        and score G_ema when it has passed the next ``eval.every_kimg`` mark. ``G_ema()``
        readies the network (batch-norm statistics), so it is called only when one is due."""
        if self.scorer is not None:
            self.scorer.maybe(G_ema, count, log)
        if self.every is None:
            return
        if self.next is None:
            self.next = (count.images_seen // self.every + 1) * self.every
        if count.images_seen >= self.next:
            path = self.run_dir / "grids" / f"kimg{count.kimg:010.3f}.png"
            images = self.grid(G_ema(), path)
            log.image("samples", make_grid(images, self.n_cols), count)
            self.next += self.every

    def final(self, G_ema: nn.Module, D: nn.Module, count, log) -> dict:
        """The end-of-run report; returns its metrics for the summary line."""
        if isinstance(self.source, ToySource):
            from minmax.toy_report import write_report  # plotting stays off the import path

            G_ema, D = (copy.deepcopy(m).cpu() for m in (G_ema, D))  # plots work on the host
            if self.source.units is not None:  # samples, metrics and D(x) in the user's units
                G_ema = InUserUnits(G_ema, self.source.units, "G")
                D = InUserUnits(D, self.source.units, "D")
            return write_report(self.cfg, self.source.density, G_ema, D, self.run_dir)
        if self.cfg.eval.plots:
            images = self.grid(G_ema, self.run_dir / "samples.png")
            log.image("samples", make_grid(images, self.n_cols), count)
        if self.scorer is None:
            return {}
        summary = {}
        for r in self.scorer.score(G_ema, count, log):
            summary[r["metric"]] = r.get("value")
            if "modes_covered" in r:  # stacked MNIST: the value is the KL to uniform
                summary[f"{r['metric']}_covered"] = r["modes_covered"]
            if "verdict" in r:  # memorisation: the distance ratio and the verdict
                summary[r["metric"]] = r["ratio"]
                summary[f"{r['metric']}_verdict"] = r["verdict"]
        return summary


class Scorer:
    """``eval.metrics`` on G_ema's images during training, against the data's reference split.

    The same code as ``minmax evaluate`` (reference statistics cached once); the samples come
    from a fixed seed, so successive scores differ only by G_ema.
    """

    def __init__(self, cfg: Config) -> None:
        from minmax.evaluate import load_extractor, parse_metrics

        self.cfg = cfg
        self.specs = parse_metrics(cfg.eval.metrics)
        self.extractor = load_extractor(cfg.eval.features)
        every = cfg.eval.every_kimg * 1000
        self.every = every if every > 0 else None
        self.next = None
        self.last: float | None = None  # the first metric's latest value: ranks checkpoints

    def maybe(self, G_ema: Callable[[], nn.Module], count, log) -> None:
        if self.every is None:
            return
        if self.next is None:
            self.next = (count.images_seen // self.every + 1) * self.every
        if count.images_seen >= self.next:
            self.score(G_ema(), count, log)
            self.next += self.every

    def score(self, G_ema: nn.Module, count, log) -> list[dict]:
        from minmax.evaluate import ImageSet, score_images
        from minmax.sample import generate

        seed = self.cfg.train.seed + GRID_SEED_OFFSET + 1
        x, y = generate(G_ema, max(spec.n for spec in self.specs), seed)
        fake = ImageSet(to_uint8(x), y, f"G_ema at {count.kimg:.1f} kimg, seed {seed}")
        data = self.cfg.data
        records = score_images(fake, data.name, self.specs, self.extractor, seed, data.root,
                               self.cfg.eval.reference_split)  # fmt: skip
        self.last = next((r["value"] for r in records if "value" in r), None)
        for record in records:
            record.update(step=count.step, kimg=count.kimg)
            log.write(record)
            if "value" in record:
                log.scalars_board({record["metric"]: record["value"]}, count)
        return records
