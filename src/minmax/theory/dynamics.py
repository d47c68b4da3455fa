"""Claims about training: Q_G → P under the game, and why G uses the non-saturating loss."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from minmax.config import LossConfig
from minmax.data import GaussianMixture
from minmax.models.mlp import MLPDiscriminator, MLPGenerator
from minmax.objectives import get_objective, nonsaturating_g, saturating_g, v_d
from minmax.train.ema import update_ema
from minmax.train.loop import lr_factor, set_lr
from minmax.train.steps import Batch, Engine, d_step, g_step


def mixture_cdf(p: GaussianMixture, x: Tensor) -> Tensor:
    """CDF of a 1-D Gaussian mixture at points x (float64)."""
    z = (x.double().unsqueeze(1) - p.means[:, 0]) / p.stds
    return (torch.special.ndtr(z) * p.weights).sum(1)


def binned_jsd(p: GaussianMixture, samples: Tensor, lo: float, hi: float, bins: int = 400) -> float:
    """JSD(P, Q) in nats between P's exact bin masses and the samples' histogram.

    Two outer bins catch everything below ``lo`` and above ``hi``. Binning can only lower a
    divergence (data processing), and sampling noise raises it by about bins/(8n).
    """
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    cdf = mixture_cdf(p, edges)
    mass_p = torch.cat([cdf[:1], cdf.diff(), 1 - cdf[-1:]])
    index = torch.bucketize(samples[:, 0].double(), edges)
    mass_q = torch.bincount(index, minlength=bins + 2).double() / len(samples)
    mass_m = (mass_p + mass_q) / 2

    def kl(a: Tensor, b: Tensor) -> float:
        keep = a > 0
        return float((a[keep] * (a[keep] / b[keep]).log()).sum())

    return 0.5 * kl(mass_p, mass_m) + 0.5 * kl(mass_q, mass_m)


@dataclass
class ConvergenceResult:
    kimg: list[float] = field(default_factory=list)
    jsd: list[float] = field(default_factory=list)  # JSD(P, Q_G_ema) after each interval
    final_samples: Tensor | None = None


def train_1d_game(
    p: GaussianMixture,
    steps: int,
    eval_every: int,
    seed: int = 0,
    batch: int = 256,
    n_eval: int = 100_000,
) -> ConvergenceResult:
    """Train MLP G and D with the game (V_D for D, non-saturating G) and track JSD(P, Q_G).

    The toy recipe: ReLU G with a small latent, lazy R1 on D, learning rates decayed to 0 by
    a cosine so that the end of the run settles instead of oscillating.
    """
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    z_dim = 2
    G, D = MLPGenerator(z_dim, 1, 128, 4), MLPDiscriminator(1, 128, 3)
    G_ema = MLPGenerator(z_dim, 1, 128, 4)
    G_ema.load_state_dict(G.state_dict())
    G_ema.requires_grad_(False)
    lr_g, lr_d = 1e-3, 2e-3
    opt_G = torch.optim.Adam(G.parameters(), lr=lr_g, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=lr_d, betas=(0.5, 0.999))
    objective = get_objective("nonsaturating")
    loss_cfg = LossConfig(r1_gamma=1.0, reg_every=4)
    z_eval = torch.randn(n_eval, z_dim, generator=torch.Generator().manual_seed(seed + 1))
    means = p.means[:, 0]
    lo, hi = float((means - 5 * p.stds).min()), float((means + 5 * p.stds).max())
    result = ConvergenceResult()

    def record(step: int) -> None:
        with torch.no_grad():
            x = G_ema(z_eval)
        result.kimg.append(step * batch / 1000)
        result.jsd.append(binned_jsd(p, x, lo, hi))
        result.final_samples = x

    record(0)
    for step in range(1, steps + 1):
        factor = lr_factor("cosine", (step - 1) / steps)
        set_lr(opt_G, lr_g * factor)
        set_lr(opt_D, lr_d * factor)
        real = p.sample(batch, rng)
        z = torch.randn(batch, z_dim, generator=rng)
        regularize = step % loss_cfg.reg_every == 0
        plain = Engine.plain(G, D)
        d_step(plain, objective, loss_cfg, [Batch(real, None, z, None)], opt_D, rng, regularize)
        z = torch.randn(batch, z_dim, generator=rng)
        g_step(plain, objective, [Batch(real, None, z, None)], opt_G)
        update_ema(G_ema, G, 0.99)
        if step % eval_every == 0:
            record(step)
    return result


@dataclass
class SaturationResult:
    d_steps: list[int]
    mean_logit_fake: list[float]  # E_Q[D] as D learns to win
    grad_saturating: list[float]  # ‖∇_θG of −E_Q[softplus(D)]‖
    grad_nonsaturating: list[float]  # ‖∇_θG of E_Q[softplus(−D)]‖


def _grad_norm(G: nn.Module, loss: Tensor) -> float:
    grads = torch.autograd.grad(loss, list(G.parameters()), retain_graph=True)
    return math.sqrt(sum(float(g.square().sum()) for g in grads))


def saturation_experiment(
    p: GaussianMixture, d_steps: list[int], seed: int = 0, batch: int = 512
) -> SaturationResult:
    """Early training: G is still its random init while D learns to reject its samples.

    After each number of D steps, compare the gradient that each G loss sends into G's
    weights. d/dD of −softplus(D) is −σ(D) → 0 as D(fake) → −∞ (saturating); d/dD of
    softplus(−D) is −σ(−D) → −1 (non-saturating).
    """
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    z_dim = 4
    G, D = MLPGenerator(z_dim, p.dim, 128, 3), MLPDiscriminator(p.dim, 128, 3)
    opt_D = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    z_probe = torch.randn(4096, z_dim, generator=torch.Generator().manual_seed(seed + 1))
    result = SaturationResult([], [], [], [])
    done = 0
    for target in sorted(d_steps):
        for _ in range(target - done):
            with torch.no_grad():
                fake = G(torch.randn(batch, z_dim, generator=rng))
            loss = v_d(D(p.sample(batch, rng)), D(fake))
            opt_D.zero_grad(set_to_none=True)
            loss.backward()
            opt_D.step()
        done = target
        logits = D(G(z_probe))
        result.d_steps.append(target)
        result.mean_logit_fake.append(float(logits.detach().mean()))
        result.grad_saturating.append(_grad_norm(G, saturating_g(logits)))
        result.grad_nonsaturating.append(_grad_norm(G, nonsaturating_g(logits)))
    return result
