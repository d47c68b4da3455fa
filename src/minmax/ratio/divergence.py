"""Divergences read off a calibrated D ≈ log P/Q, with seeded bootstrap intervals.

Three estimates, each a mean of per-sample terms on held-out samples x_p ~ P, x_q ~ Q:

- JSD lower bound ``log 2 − V_D/2``: V_D(D) >= V_D(D*) = 2 log 2 − 2 JSD for any D, so this
  holds for every D (up to sampling noise) and is tight at D*;
- ``KL(P‖Q) ≈ E_P[D]`` and ``KL(Q‖P) ≈ −E_Q[D]``: exact only at D = D*, and biased where D
  cannot follow the ratio (a dropped mode: P ≫ Q, D* → ∞).

On toy densities the references use the exact ``log p`` and, for a GAN's Q_G (which has no
density we can evaluate), a Gaussian kernel density estimate from many G samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from minmax.data.toy import Density, GaussianMixture
from minmax.toy_report import kde_log_prob

_LOG_2 = math.log(2.0)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a percentile bootstrap interval (``level``, default 95%)."""

    value: float
    low: float
    high: float
    reference: float | None = None  # the exact (or KDE-based) value, where there is one

    def as_dict(self) -> dict:
        return asdict(self)


def bootstrap_means(
    terms_real: Tensor, terms_fake: Tensor, n_boot: int, seed: int, chunk: int = 50
) -> Tensor:
    """Replicates of mean(terms_real) + mean(terms_fake), both sides resampled independently."""
    rng = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        total = torch.zeros(rows, dtype=torch.float64)
        for terms in (terms_real, terms_fake):
            if len(terms):
                index = torch.randint(len(terms), (rows, len(terms)), generator=rng)
                total += terms.double()[index].mean(1)
        out.append(total)
    return torch.cat(out)


def _estimate(terms_real: Tensor, terms_fake: Tensor, scale: float, shift: float,
              n_boot: int, seed: int, level: float) -> Estimate:  # fmt: skip
    """shift + scale · (mean(real) + mean(fake)) with its bootstrap interval."""
    value = float(terms_real.double().mean()) if len(terms_real) else 0.0
    value += float(terms_fake.double().mean()) if len(terms_fake) else 0.0
    boot = shift + scale * bootstrap_means(terms_real, terms_fake, n_boot, seed)
    alpha = (1 - level) / 2
    low, high = torch.quantile(boot, torch.tensor([alpha, 1 - alpha], dtype=boot.dtype)).tolist()
    return Estimate(shift + scale * value, low, high)


def v_d_terms(logits_real: Tensor, logits_fake: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample terms of V_D: softplus(−D(x_p)) and softplus(D(x_q))."""
    return F.softplus(-logits_real.double()), F.softplus(logits_fake.double())


def divergence_estimates(
    logits_real: Tensor, logits_fake: Tensor, n_boot: int = 1000, seed: int = 0, level=0.95
) -> dict[str, Estimate]:
    """``v_d``, ``jsd_bound``, ``kl_pq`` and ``kl_qp`` from D's logits on held-out samples."""
    real, fake = logits_real.double(), logits_fake.double()
    empty = real.new_zeros(0)
    terms_p, terms_q = v_d_terms(real, fake)
    return {
        "v_d": _estimate(terms_p, terms_q, 1.0, 0.0, n_boot, seed, level),
        "jsd_bound": _estimate(terms_p, terms_q, -0.5, _LOG_2, n_boot, seed, level),
        "kl_pq": _estimate(real, empty, 1.0, 0.0, n_boot, seed, level),
        "kl_qp": _estimate(empty, fake, -1.0, 0.0, n_boot, seed, level),
    }


class KDEDensity:
    """Q_G as a Gaussian kernel density estimate of G's samples: ``log_prob`` and ``sample``.

    Sampling it draws a stored sample plus N(0, h² I) noise, which is exactly the KDE's law.
    """

    def __init__(self, samples: Tensor, bandwidth: float) -> None:
        self.samples = samples.float()
        self.bandwidth = float(bandwidth)
        self.dim = samples.shape[1]

    def log_prob(self, x: Tensor) -> Tensor:
        return kde_log_prob(self.samples, x, self.bandwidth)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        index = torch.randint(len(self.samples), (n,), generator=generator)
        noise = torch.randn(n, self.dim, generator=generator) * self.bandwidth
        return self.samples[index] + noise


def kde_bandwidth(density: Density, samples: Tensor) -> float:
    """The narrowest mode's std for mixtures (as the run report does), else Scott's rule."""
    if isinstance(density, GaussianMixture):
        return float(density.stds.min())
    return float(samples.std(0).mean()) * len(samples) ** (-1 / (samples.shape[1] + 4))


@dataclass(frozen=True)
class LogDensities:
    """log p and log q at samples x_p ~ P and x_q ~ Q: every toy reference comes from these.

    Computed once, because a KDE's ``log_prob`` is the slow part of a calibration report.
    """

    p_at_p: Tensor
    q_at_p: Tensor
    p_at_q: Tensor
    q_at_q: Tensor

    @classmethod
    def of(
        cls, p: Density, log_q: Callable[[Tensor], Tensor], x_p: Tensor, x_q: Tensor
    ) -> LogDensities:
        return cls(p.log_prob(x_p), log_q(x_p).double(), p.log_prob(x_q), log_q(x_q).double())

    def divergences(self) -> dict[str, float]:
        """JSD = ½ E_P[log 2p/(p+q)] + ½ E_Q[log 2q/(p+q)] (as ``minmax.metrics.exact``),
        KL(P‖Q) = E_P[log p/q] and KL(Q‖P) = E_Q[log q/p], by Monte Carlo."""
        half_p = _LOG_2 + self.p_at_p - torch.logaddexp(self.p_at_p, self.q_at_p)
        half_q = _LOG_2 + self.q_at_q - torch.logaddexp(self.p_at_q, self.q_at_q)
        return {
            "jsd": float(0.5 * (half_p.mean() + half_q.mean())),
            "kl_pq": float((self.p_at_p - self.q_at_p).mean()),
            "kl_qp": float((self.q_at_q - self.p_at_q).mean()),
        }

    def ratio_error(self, logits_p: Tensor, logits_q: Tensor) -> dict[str, float]:
        """|D − log p/q| weighted by M = (P+Q)/2: averaged over P's and Q's samples alike.

        The mean is dominated by Q's samples far off P's support (a bridge between modes),
        where log p is hundreds of nats down and no D follows it, so the median comes too.
        """
        truth = torch.cat([self.p_at_p - self.q_at_p, self.p_at_q - self.q_at_q])
        error = (torch.cat([logits_p, logits_q]).double() - truth).abs()
        error = error[torch.isfinite(error)]
        return {
            "ratio_error_mean": float(error.mean()),
            "ratio_error_median": float(error.median()),
        }


def exact_divergences(p: Density, q: Density, n: int, seed: int) -> dict[str, float]:
    """JSD, KL(P‖Q) and KL(Q‖P) of two densities we can sample and evaluate (Monte Carlo)."""
    rng = torch.Generator().manual_seed(seed)
    return LogDensities.of(p, q.log_prob, p.sample(n, rng), q.sample(n, rng)).divergences()


ROWS = {
    "jsd_bound": ("JSD >= log 2 - V_D/2", "jsd"),
    "kl_pq": ("KL(P||Q) ~ E_P[D]", "kl_pq"),
    "kl_qp": ("KL(Q||P) ~ -E_Q[D]", "kl_qp"),
}


def with_references(estimates: dict[str, Estimate], exact: dict[str, float]) -> dict:
    """Attach the exact values (keys of :func:`exact_divergences`) to the estimates."""
    out = dict(estimates)
    for key, (_, ref_key) in ROWS.items():
        if ref_key in exact:
            e = estimates[key]
            out[key] = Estimate(e.value, e.low, e.high, exact[ref_key])
    return out


def format_divergences(estimates: dict[str, Estimate], reference_name: str = "exact") -> str:
    """A table: quantity, estimate, 95% interval and the reference where there is one."""
    lines = [f"{'quantity':<22}{'estimate':>10}  {'95% bootstrap interval':<22}  {reference_name}"]
    for key, (name, _) in ROWS.items():
        e = estimates[key]
        ref = "" if e.reference is None else f"{e.reference:.4f}"
        interval = f"[{e.low:.4f}, {e.high:.4f}]"
        lines.append(f"{name:<22}{e.value:>10.4f}  {interval:<22}  {ref}")
    return "\n".join(lines)
