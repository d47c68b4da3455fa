"""Is D calibrated? Checks that need no known density.

On a held-out mix of equally many real (P) and generated (Q_G) samples, the probability that a
sample is real is p/(p+q) = sigmoid(log P/Q_G): a D equal to D* is a calibrated classifier.
So sigmoid(D) is binned (a reliability diagram) and, per bin, the share of real samples is set
against the mean predicted probability; the expected calibration error (ECE) is their gap
averaged over the samples. A constant offset in D (overconfidence) or a scale (too sharp) shows
as bins off the diagonal.

A Platt step — D' = a·D + b, two numbers fit by minimising V_D on half of the held-out mix —
is the cheapest correction there is; it is scored on the other half, so it is reported only as
what it would change.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from minmax.ratio.divergence import v_d_terms

BINS = 10


def reliability(logits_p: Tensor, logits_q: Tensor, bins: int = BINS) -> dict:
    """ECE and the reliability diagram of sigmoid(D) on reals (label 1) and fakes (label 0);
    the two sides are weighted equally whatever their counts."""
    s = torch.cat([logits_p, logits_q]).double().sigmoid()
    real = torch.cat([torch.ones(len(logits_p)), torch.zeros(len(logits_q))]).double()
    weight = torch.cat([torch.full((len(logits_p),), 0.5 / len(logits_p)),
                        torch.full((len(logits_q),), 0.5 / len(logits_q))]).double()  # fmt: skip
    index = (s * bins).long().clamp(max=bins - 1)
    rows, ece = [], 0.0
    for k in range(bins):
        inside = index == k
        mass = float(weight[inside].sum())
        if mass == 0:
            rows.append({"low": k / bins, "high": (k + 1) / bins, "n": 0,
                         "mean_prob": math.nan, "real_share": math.nan})  # fmt: skip
            continue
        w = weight[inside] / mass
        mean_prob, share = float((w * s[inside]).sum()), float((w * real[inside]).sum())
        ece += mass * abs(share - mean_prob)
        rows.append({"low": k / bins, "high": (k + 1) / bins, "n": int(inside.sum()),
                     "mean_prob": mean_prob, "real_share": share})  # fmt: skip
    return {"ece": ece, "bins": rows}


def v_d(logits_p: Tensor, logits_q: Tensor) -> float:
    """V_D = E_P[softplus(−D)] + E_Q[softplus(D)] (2 log 2 for a D that cannot tell)."""
    terms_p, terms_q = v_d_terms(logits_p, logits_q)
    return float(terms_p.mean() + terms_q.mean())


def fit_platt(logits_p: Tensor, logits_q: Tensor) -> tuple[float, float]:
    """(a, b) minimising V_D of a·D + b: a convex problem in two numbers (Newton by LBFGS)."""
    p, q = logits_p.double(), logits_q.double()
    ab = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([ab], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.softplus(-(ab[0] * p + ab[1])).mean() + F.softplus(ab[0] * q + ab[1]).mean()
        loss.backward()
        return loss

    opt.step(closure)
    a, b = ab.detach().tolist()
    return a, b


def platt_check(logits_p: Tensor, logits_q: Tensor) -> dict:
    """Fit a Platt step on the first half of each side, score it on the second half."""
    hp, hq = len(logits_p) // 2, len(logits_q) // 2
    a, b = fit_platt(logits_p[:hp], logits_q[:hq])
    test_p, test_q = logits_p[hp:], logits_q[hq:]
    return {
        "a": a, "b": b, "n_fit": hp + hq, "n_test": len(test_p) + len(test_q),
        "v_d": v_d(test_p, test_q), "v_d_platt": v_d(a * test_p + b, a * test_q + b),
        "ece": reliability(test_p, test_q)["ece"],
        "ece_platt": reliability(a * test_p + b, a * test_q + b)["ece"],
    }  # fmt: skip


def plot_reliability(diagrams: dict[str, dict], path) -> None:
    """One reliability diagram per D (e.g. the run's and the calibrated one) on one axis."""
    from minmax.plots import plt  # the headless backend is set there

    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="calibrated")
    for name, r in diagrams.items():
        points = [(b["mean_prob"], b["real_share"]) for b in r["bins"] if b["n"]]
        ax.plot(*zip(*points, strict=True), marker="o", label=f"{name} (ECE {r['ece']:.3f})")
    ax.set_xlabel("sigmoid(D): predicted probability of real")
    ax.set_ylabel("share of real samples in the bin")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("reliability on held-out P and Q_G, equal weight")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
