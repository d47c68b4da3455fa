"""R3GAN's burn-in schedules (Huang et al. 2024): learning rate, Adam's β2, G_ema's half-life
and the R1/R2 weight γ each move from a start value to their end value over the first
``train.burnin_kimg`` thousand images, then stay there.

The end values are the plain config keys (``train.lr_g``/``lr_d``, ``train.beta2``,
``train.ema_half_life_kimg`` or ``train.ema_beta``, ``loss.r1_gamma``/``r2_gamma``); the start
values are ``train.lr_start_factor`` (× the learning rates), ``train.beta2_start``,
``train.ema_half_life_start_factor`` (× the half-life) and ``train.gamma_start_factor``
(× both γ). Between them the value follows a half cosine of the progress p = kimg / burnin_kimg:

    value(kimg) = end + (start − end) · (1 + cos(π · min(p, 1))) / 2

so it leaves the start and reaches the end with zero slope. Every value is a function of the
images seen alone, which checkpoints store: a resumed run continues the same schedule.
Defaults (burnin_kimg = 0, every start factor 1, beta2_start none, ema_half_life_kimg 0)
give exactly the constant values, and the loop leaves the optimizers' β2 and G_ema's β as
they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from minmax.config import TrainConfig


@dataclass(frozen=True)
class BurnIn:
    """The scheduled values at one moment of training."""

    lr_factor: float  # multiplies lr_g and lr_d (with lr_schedule and rollbacks)
    beta2: float | None  # Adam's β2 for G and D; None = leave the optimizers' own
    ema_beta: float  # G_ema's decay per G step
    gamma_factor: float  # multiplies loss.r1_gamma and loss.r2_gamma


def cosine_ramp(start: float, end: float, kimg: float, burnin_kimg: float) -> float:
    """start at kimg 0 -> end at burnin_kimg by a half cosine; end after (and when off)."""
    if burnin_kimg <= 0 or kimg >= burnin_kimg:
        return end
    weight = 0.5 * (1 + math.cos(math.pi * max(kimg, 0.0) / burnin_kimg))
    return end + (start - end) * weight


def ema_beta_from_half_life(half_life_kimg: float, images_per_step: int) -> float:
    """The per-G-step decay that halves an old weight's share every ``half_life_kimg``:
    β = 0.5^(images per step / (1000 · half-life)); a half-life of 0 is β = 0 (G_ema = G)."""
    if half_life_kimg <= 0:
        return 0.0
    return 0.5 ** (images_per_step / (1000 * half_life_kimg))


def burnin(t: TrainConfig, kimg: float) -> BurnIn:
    """The scheduled values at ``kimg`` thousand images seen."""
    k, ramp = t.burnin_kimg, cosine_ramp
    if t.ema_half_life_kimg > 0:
        start = t.ema_half_life_kimg * t.ema_half_life_start_factor
        half_life = ramp(start, t.ema_half_life_kimg, kimg, k)
        ema_beta = ema_beta_from_half_life(half_life, t.n_dis * t.batch_size)
    else:
        ema_beta = t.ema_beta
    return BurnIn(
        lr_factor=ramp(t.lr_start_factor, 1.0, kimg, k),
        beta2=None if t.beta2_start is None else ramp(t.beta2_start, t.beta2, kimg, k),
        ema_beta=ema_beta,
        gamma_factor=ramp(t.gamma_start_factor, 1.0, kimg, k),
    )
