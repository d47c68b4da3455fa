"""The end-of-run report for low-dimensional data: exact mode metrics and plots."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from minmax.config import Config
from minmax.data import GaussianMixture
from minmax.metrics import mode_report
from minmax.objectives import head_mean
from minmax.plots import bounds_of, plot_fields, plot_points
from minmax.sample import sample

EVAL_SEED_OFFSET = 10_000  # evaluation noise never overlaps the training stream


def kde_log_prob(samples: Tensor, x: Tensor, bandwidth: float, chunk: int = 2048) -> Tensor:
    """log of a Gaussian kernel density estimate from ``samples``, evaluated at ``x``."""
    d = samples.shape[1]
    samples = samples.float()
    const = math.log(samples.shape[0]) + d / 2 * math.log(2 * math.pi * bandwidth**2)
    out = []
    for block in x.float().split(chunk):
        sq = torch.cdist(block, samples).square()
        out.append(torch.logsumexp(-sq / (2 * bandwidth**2), dim=1).double() - const)
    return torch.cat(out)


@torch.no_grad()
def write_report(cfg: Config, source, G_ema: nn.Module, D: nn.Module, run_dir: Path) -> dict:
    """Score G_ema on ``eval.n_samples`` samples and draw samples.png and discriminator.png."""
    seed = cfg.train.seed + EVAL_SEED_OFFSET
    fake = sample(G_ema, cfg.eval.n_samples, seed)
    metrics: dict = {}
    if isinstance(source, GaussianMixture):
        metrics = mode_report(fake, source, n_std=cfg.eval.n_std).as_dict()
    if source.dim > 2 or not cfg.eval.plots:
        return metrics
    real = source.sample(cfg.eval.n_samples, torch.Generator().manual_seed(seed))
    title = f"{Path(cfg.data.name).name}: {cfg.eval.n_samples} samples from G_ema"
    if "modes_captured" in metrics:
        title += f"\n{metrics['modes_captured']}/{metrics['n_modes']} modes, "
        title += f"{100 * metrics['hq_fraction']:.1f}% HQ, rev-KL {metrics['reverse_kl']:.3f}"
    plot_points(real, fake, run_dir / "samples.png", title)

    fields = {"D(x) (logit)": lambda x: head_mean(D(x))}
    mask, ratio_name = None, ""
    if hasattr(source, "log_prob"):
        many = sample(G_ema, 2000, seed + 1)
        if isinstance(source, GaussianMixture):
            bandwidth = float(source.stds.min())
        else:
            bandwidth = float(many.std(0).mean()) * many.shape[0] ** (-1 / (source.dim + 4))

        memo: dict[int, Tensor] = {}

        def log_q(x: Tensor) -> Tensor:  # the plot asks twice for the same grid
            if id(x) not in memo:
                memo.clear()
                memo[id(x)] = kde_log_prob(many, x, bandwidth)
            return memo[id(x)]

        ratio_name = "log P(x)/Q_G(x) (Q_G by KDE)"
        fields[ratio_name] = lambda x: source.log_prob(x) - log_q(x)
        # Show only where the mixture M = (P+Q)/2 has non-negligible density.
        log_floor = math.log(1e-3)

        def mask(x: Tensor) -> Tensor:
            log_m = torch.logaddexp(source.log_prob(x), log_q(x))
            return log_m - log_m.max() > log_floor

    plot_fields(
        fields,
        bounds_of(torch.cat([real, fake])),
        run_dir / "discriminator.png",
        mask=mask,
        points=real if source.dim == 2 else None,
        masked=(ratio_name,),
    )
    return metrics
