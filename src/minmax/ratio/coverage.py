"""How often G makes each group of the data, from D's verdicts on real samples, with intervals.

With D ≈ log P/Q_G, a group's coverage Q_G(A)/P(A) = E_{P|A}[exp(−D)] (∫_A q = ∫_A p·e^{−D*}).
The plain mean of exp(−D) over a group's real samples is a poor estimate at the end of a run:

- an overconfident D (the training D, or a calibration a little off) scales every weight
  alike, so every group looks under- or over-covered. Over all of P the weights must average
  to 1 (Q_G's total mass), so dividing by their mean over every real sample (self-normalised
  importance weights) removes that common factor;
- a few real samples that D calls fake carry weights e^{−D} thousands of times the others and
  decide the mean. Weights are truncated at √n times their median (truncated importance
  sampling, Ionides 2008, whose bias vanishes as n grows; the median in place of the mean so
  that the outliers cannot raise their own cap). Truncation only lowers the largest weights:
  it can understate how much G over-makes a group, never flag one it covers. Each group also
  reports its effective sample size (Σw)²/Σw², the number of equally weighted samples its
  estimate is worth.

Intervals come from a percentile bootstrap over the real samples (all groups resampled
together, so the uncertainty of the group shares is in them too). A group is flagged only when
its whole interval lies below ``flag`` (0.5: G makes it less than half as often as the data).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

BOOTSTRAP = 1000  # resamples behind each interval
LEVEL = 0.9  # two-sided interval: a flag is a one-sided 95% statement


@dataclass(frozen=True)
class GroupCoverage:
    """One group's coverage estimate Q_G(A)/P(A), its interval and what it rests on."""

    group: int
    n_real: int
    estimate: float  # self-normalised, truncated weights
    low: float
    high: float
    ess: float  # effective sample size of the group's weights
    raw: float  # the plain mean of exp(−D) over the group (no normalising, no truncation)
    flagged: bool

    def as_dict(self) -> dict:
        return asdict(self)


def bootstrap_indices(n: int, n_bootstrap: int, rng: torch.Generator):
    """(≤ 100, n) resample indices at a time, ``n_bootstrap`` rows in all: bounded memory."""
    for start in range(0, n_bootstrap, 100):
        yield torch.randint(n, (min(100, n_bootstrap - start), n), generator=rng)


def truncated_log_weights(logits: Tensor) -> Tensor:
    """log w = −D, truncated at log(median w · √n), in float64 (the sums stay finite)."""
    log_w = -logits.double()
    return log_w.clamp(max=float(log_w.median()) + 0.5 * math.log(len(log_w)))


def _group_ratios(log_w: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """(…, n_groups) mean weight in each group over the mean weight overall; rows of
    ``log_w``/``groups`` are samples along the last dimension. Empty groups give nan."""
    w = (log_w - log_w.amax(-1, keepdim=True)).exp()  # the common scale cancels in the ratio
    shape = (*w.shape[:-1], n_groups)
    sums = torch.zeros(shape, dtype=w.dtype).scatter_add_(-1, groups, w)
    counts = torch.zeros(shape, dtype=w.dtype).scatter_add_(-1, groups, torch.ones_like(w))
    overall = w.sum(-1, keepdim=True) / w.shape[-1]
    return sums / counts / overall


def group_coverage(
    groups: Tensor, logits: Tensor, n_groups: int, flag: float = 0.5, seed: int = 0,
    n_bootstrap: int = BOOTSTRAP, level: float = LEVEL,
) -> list[GroupCoverage]:  # fmt: skip
    """Coverage of each group ``0 .. n_groups-1`` of real samples (``groups``: (n,) ints)
    from D's ``logits`` on them (see the module doc). Seeded: the same call, the same
    intervals."""
    if len(groups) != len(logits):
        raise ValueError(f"{len(groups)} group labels for {len(logits)} logits")
    groups = groups.long()
    log_w = truncated_log_weights(logits)
    estimate = _group_ratios(log_w, groups, n_groups)
    rng = torch.Generator().manual_seed(seed)
    tail = (1 - level) / 2
    # (n_bootstrap, n_groups); nan where a resample missed a group
    boot = torch.cat([_group_ratios(log_w[index], groups[index], n_groups)
                      for index in bootstrap_indices(len(log_w), n_bootstrap, rng)])  # fmt: skip
    lows = torch.nanquantile(boot, tail, dim=0)
    highs = torch.nanquantile(boot, 1 - tail, dim=0)
    w = (log_w - log_w.max()).exp()  # ESS is scale-free
    plain = -logits.double()
    rows = []
    for k in range(n_groups):
        member = groups == k
        n_k = int(member.sum())
        if n_k == 0:
            rows.append(GroupCoverage(k, 0, math.nan, math.nan, math.nan, 0.0, math.nan, False))
            continue
        wk = w[member]
        ess = float(wk.sum() ** 2 / (wk**2).sum())
        high = float(highs[k])
        log_raw = float(torch.logsumexp(plain[member], 0)) - math.log(n_k)
        rows.append(GroupCoverage(
            group=k, n_real=n_k, estimate=float(estimate[k]), low=float(lows[k]), high=high,
            ess=ess, raw=math.exp(min(log_raw, 700.0)), flagged=high < flag,
        ))  # fmt: skip
    return rows
