"""Corrected sampling: use D ≈ log P/Q to turn G's proposals into samples closer to P.

With r(x) = exp D(x) ≈ p(x)/q(x), three classic corrections:

- ``drs``: discriminator rejection sampling (Azadi et al. 2019). Accept x ~ Q with
  probability sigmoid(F), F = D − D_M − log(1 − exp(D − D_M − ε)) − γ, D_M the largest D
  of a burn-in. At γ = 0 that is exp(D − D_M) = p/(M q): exact rejection sampling when
  D = D* and e^{D_M} bounds the ratio. A shift γ chosen to hit a target acceptance rate
  bounds the cost (e^{D_M} G calls per sample at γ = 0) at the price of a bias.
- ``mh``: Metropolis–Hastings with independent proposals (Turner et al. 2019): a chain moves
  from x to x' ~ Q with probability min(1, r(x')/r(x)); each sample is a chain's last state.
- ``sir``: sampling-importance-resampling: draw a pool from Q, resample with weights ∝ r.

None of them can bring back a mode G never proposes: they reweight what G makes.
Each returns (x, y, stats); y is None for unconditional models.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from minmax.errors import UsageError

Proposal = Callable[[int, torch.Generator], tuple[Tensor, Tensor | None]]  # n draws of Q
LogRatio = Callable[[Tensor, Tensor | None], Tensor]  # (x, y) -> D ≈ log p/q, float64

METHODS = ("drs", "mh", "sir")
BURN_IN = 10_000  # DRS: proposals that set D_M and γ (kept as candidates too)
CHAIN_LENGTH = 50  # MH: proposals per chain after its start
POOL_FACTOR = 10  # SIR: pool size per kept sample
MAX_PROPOSALS_PER_SAMPLE = 1000  # DRS gives up (and says why) beyond this


@dataclass(frozen=True)
class CorrectionStats:
    """What a correction cost: G evaluations (all proposals, burn-in included) and time.

    ``acceptance_rate``: DRS accepted/proposed; MH accepted moves/proposed moves; SIR
    distinct pool members kept/pool size (1 when uncorrected).
    """

    method: str
    n_kept: int
    n_proposed: int
    acceptance_rate: float
    seconds: float
    details: dict = field(default_factory=dict)

    @property
    def g_evals_per_sample(self) -> float:
        return self.n_proposed / max(1, self.n_kept)

    def as_dict(self) -> dict:
        return {**asdict(self), "g_evals_per_sample": self.g_evals_per_sample}

    def line(self) -> str:
        return (
            f"{self.method}: kept {self.n_kept} of {self.n_proposed} proposals, acceptance "
            f"{100 * self.acceptance_rate:.1f}%, {self.g_evals_per_sample:.2f} G evaluations "
            f"per sample, {self.seconds:.2f} s"
        )


def check_accept_target(accept_target: float | None) -> None:
    if accept_target is not None and not 0 < accept_target <= 1:
        raise UsageError(f"--accept-target must be in (0, 1], got {accept_target}")


def _cat_y(parts: list[Tensor | None]) -> Tensor | None:
    return None if not parts or parts[0] is None else torch.cat(parts)  # type: ignore[arg-type]


def uncorrected(propose: Proposal, n: int, rng: torch.Generator):
    """Plain G samples with the same bookkeeping: the baseline of every table."""
    start = time.monotonic()
    x, y = propose(n, rng)
    return x, y, CorrectionStats("none", n, n, 1.0, time.monotonic() - start)


def drs_logits(d: Tensor, d_max: float, epsilon: float) -> Tensor:
    """F + γ = D − D_M − log(1 − exp(D − D_M − ε)), in float64, with D capped at D_M."""
    a = (d.double() - d_max).clamp(max=0.0)
    return a - torch.log(-torch.expm1(a - epsilon))


def drs_shift(f: Tensor, accept_target: float | None) -> float:
    """γ with mean(sigmoid(F − γ)) = accept_target on the burn-in (bisection).

    None keeps γ = 0 (rejection sampling with bound e^{D_M}); 1 accepts everything (γ = −∞).
    """
    check_accept_target(accept_target)
    if accept_target is None:
        return 0.0
    if accept_target == 1:
        return -math.inf
    lo, hi = float(f.min()) - 50.0, float(f.max()) + 50.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if torch.sigmoid(f - mid).mean() > accept_target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def discriminator_rejection(
    propose: Proposal,
    log_ratio: LogRatio,
    n: int,
    rng: torch.Generator,
    accept_target: float | None = None,
    *,
    burn_in: int = BURN_IN,
    epsilon: float = 1e-6,
    batch: int = 8192,
):
    """Discriminator rejection sampling; γ hits ``accept_target``, or is 0 when it is None.

    γ = 0 is rejection sampling with bound e^{D_M}: exact when D = log p/q and e^{D_M} =
    sup p/q, and it costs e^{D_M} G calls per sample, many when D_M is an outlier. A target
    bounds the cost but biases the samples: γ > 0 under-weights the top of the ratio,
    γ < 0 lets more of Q through. The burn-in proposals set D_M and γ and are themselves
    candidates. D_M then stays fixed and a larger D counts as D_M (Azadi et al. raise D_M
    instead; with a learned D one extrapolating outlier would then stall the sampler).
    """
    start = time.monotonic()
    x, y = propose(burn_in, rng)
    d = log_ratio(x, y)
    d_max = float(d.max())
    gamma = drs_shift(drs_logits(d, d_max, epsilon), accept_target)
    kept_x, kept_y, n_kept, n_proposed, n_above = [], [], 0, burn_in, 0
    while True:
        prob = torch.sigmoid(drs_logits(d, d_max, epsilon) - gamma)
        accept = torch.rand(len(d), generator=rng, dtype=torch.float64) < prob
        kept_x.append(x[accept])
        kept_y.append(None if y is None else y[accept])
        n_kept += int(accept.sum())
        n_above += int((d > d_max).sum())
        if n_kept >= n:
            break
        if n_proposed >= MAX_PROPOSALS_PER_SAMPLE * n + burn_in:
            raise UsageError(
                f"drs accepted only {n_kept} of {n_proposed} proposals: raise --accept-target "
                "or recalibrate D"
            )
        rate = max(n_kept / n_proposed, 1e-3)
        size = min(batch, max(64, math.ceil(1.1 * (n - n_kept) / rate)))
        x, y = propose(size, rng)
        d = log_ratio(x, y)
        n_proposed += size
    y_all = _cat_y(kept_y)
    details = {"gamma": gamma, "d_max": d_max, "above_d_max": n_above, "burn_in": burn_in,
               "epsilon": epsilon, "accept_target": accept_target}  # fmt: skip
    seconds = time.monotonic() - start
    stats = CorrectionStats("drs", n, n_proposed, n_kept / n_proposed, seconds, details)
    return torch.cat(kept_x)[:n], None if y_all is None else y_all[:n], stats


def metropolis_hastings(
    propose: Proposal,
    log_ratio: LogRatio,
    n: int,
    rng: torch.Generator,
    chain_length: int = CHAIN_LENGTH,
):
    """n independent chains of ``chain_length`` independent proposals; keep the last states.

    Each chain starts at a proposal (no real data is needed). Independent MH converges
    geometrically, at least as fast as (1 − 1/M)^k with M = sup p/q.
    """
    if chain_length < 1:
        raise UsageError(f"--chain-length must be at least 1, got {chain_length}")
    start = time.monotonic()
    x, y = propose(n, rng)
    d = log_ratio(x, y)
    moves = torch.zeros(n, dtype=torch.long)
    for _ in range(chain_length):
        x_new, y_new = propose(n, rng)
        d_new = log_ratio(x_new, y_new)
        move = torch.rand(n, generator=rng, dtype=torch.float64).log() < d_new - d
        x = torch.where(move.view(-1, *[1] * (x.ndim - 1)), x_new, x)
        y = None if y is None else torch.where(move, y_new, y)
        d = torch.where(move, d_new, d)
        moves += move
    details = {"chain_length": chain_length, "never_moved": int((moves == 0).sum())}
    rate, seconds = float(moves.sum()) / (n * chain_length), time.monotonic() - start
    stats = CorrectionStats("mh", n, n * (chain_length + 1), rate, seconds, details)
    return x, y, stats


def importance_resampling(
    propose: Proposal,
    log_ratio: LogRatio,
    n: int,
    rng: torch.Generator,
    pool_factor: int = POOL_FACTOR,
):
    """Draw ``pool_factor``·n proposals, resample n with replacement, weights ∝ exp(D).

    Reports the pool's effective sample size 1/Σw² (normalised weights): when it is near n
    or below, the kept samples repeat a few pool members.
    """
    if pool_factor < 1:
        raise UsageError(f"--pool-factor must be at least 1, got {pool_factor}")
    start = time.monotonic()
    pool = n * pool_factor
    x, y = propose(pool, rng)
    weights = torch.softmax(log_ratio(x, y).double(), dim=0)
    index = torch.multinomial(weights, n, replacement=True, generator=rng)
    distinct = int(index.unique().numel())
    details = {"pool_factor": pool_factor, "ess": float(1 / weights.square().sum()),
               "distinct": distinct}  # fmt: skip
    stats = CorrectionStats("sir", n, pool, distinct / pool, time.monotonic() - start, details)
    return x[index], None if y is None else y[index], stats


def correct(
    method: str,
    propose: Proposal,
    log_ratio: LogRatio,
    n: int,
    seed: int = 0,
    *,
    accept_target: float | None = None,
    chain_length: int = CHAIN_LENGTH,
    pool_factor: int = POOL_FACTOR,
):
    """Run correction ``method`` (drs, mh, sir or none) from ``seed``: (x, y, stats)."""
    if n <= 0:
        raise UsageError(f"--n must be positive, got {n}")
    check_accept_target(accept_target)
    if accept_target is not None and method != "drs":
        raise UsageError(f"--accept-target tunes drs only, not '{method}': drop it")
    rng = torch.Generator().manual_seed(seed)
    if method == "drs":
        return discriminator_rejection(propose, log_ratio, n, rng, accept_target)
    if method == "mh":
        return metropolis_hastings(propose, log_ratio, n, rng, chain_length)
    if method == "sir":
        return importance_resampling(propose, log_ratio, n, rng, pool_factor)
    if method == "none":
        return uncorrected(propose, n, rng)
    raise UsageError(f"unknown correction '{method}': choose from {', '.join(METHODS)}")
