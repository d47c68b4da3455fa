"""G's class shares read from G's own samples: a linear probe on the calibrated D's features.

D* weighs *real* samples: a class's coverage from exp(−D) on its real members (``coverage``)
rests on a few hundred weights of which a handful dominate (an effective sample size of 50–175
of 500 per class on MNIST), and where G makes look-alikes of a class D cannot push that class's
weights to zero. The other side of the ratio is G's own samples, which need no weights: read
each one's class and count. The calibrated D has had to tell real images of every class from
G's, so its penultimate features (the input of its final ``fc`` layer) separate the classes; a
multinomial logistic regression on them, fit to the held-out labelled reals D was calibrated
on, reads G's samples. A class's share among them over its share in the data estimates
Q_G(A)/P(A); the interval is a percentile bootstrap over G's samples, and the probe's own bias
shows in the same ratio computed on held-out reals (1 for every class for a perfect probe).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from minmax.ratio.coverage import BOOTSTRAP, LEVEL, bootstrap_indices
from minmax.ratio.run import conditional

L2 = 1e-3  # ridge on the probe's weights (features standardised): keeps LBFGS finite
MAX_ITER = 200


@dataclass(frozen=True)
class ProbeCoverage:
    """One class: G's share over the data's, its interval, and the probe's reading of reals."""

    group: int
    estimate: float
    low: float
    high: float
    on_reals: float  # the same ratio on held-out reals: the probe's own bias (1 = none)
    flagged: bool

    def as_dict(self) -> dict:
        return asdict(self)


def head_features(D: nn.Module, x: Tensor, y: Tensor | None = None, batch: int = 1000) -> Tensor:
    """The input of D's final ``fc`` layer for each row of x (float32, no grad); y is passed
    only to a class-conditional D."""
    y = y if conditional(D) else None
    fc = getattr(D, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise ValueError(f"{type(D).__name__} has no final 'fc' linear layer to probe")
    out: list[Tensor] = []
    hook = fc.register_forward_hook(lambda _m, inputs, _o: out.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            for i, xb in zip(range(0, len(x), batch), x.split(batch), strict=True):
                D(xb, None if y is None else y[i : i + batch])
    finally:
        hook.remove()
    return torch.cat(out).float().flatten(1)


class LinearProbe:
    """Multinomial logistic regression on standardised features, fit by L-BFGS from zero
    weights (the loss is convex: no random start is needed)."""

    def __init__(self, features: Tensor, labels: Tensor, n_classes: int) -> None:
        self.mean, self.std = features.mean(0), features.std(0) + 1e-6
        z = (features - self.mean) / self.std
        self.linear = nn.Linear(z.shape[1], n_classes)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        opt = torch.optim.LBFGS(self.linear.parameters(), max_iter=MAX_ITER,
                                line_search_fn="strong_wolfe")  # fmt: skip

        def closure() -> Tensor:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(self.linear(z), labels.long())
            loss = loss + L2 * self.linear.weight.square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        self.linear.requires_grad_(False)

    def probabilities(self, features: Tensor) -> Tensor:
        return torch.softmax(self.linear((features - self.mean) / self.std), dim=1).double()

    def accuracy(self, features: Tensor, labels: Tensor) -> float:
        return float((self.probabilities(features).argmax(1) == labels).double().mean())


def probe_coverage(
    probe: LinearProbe, fake_features: Tensor, real_features: Tensor, real_labels: Tensor,
    data_shares: Tensor, flag: float = 0.5, seed: int = 0, n_bootstrap: int = BOOTSTRAP,
    level: float = LEVEL,
) -> list[ProbeCoverage]:  # fmt: skip
    """Per class: the probe's mean probability over G's samples over the data's share, with a
    bootstrap interval over G's samples; flagged when the interval lies below ``flag``."""
    shares = data_shares.double()
    p_fake = probe.probabilities(fake_features)
    estimate = p_fake.mean(0) / shares
    rng = torch.Generator().manual_seed(seed)
    boot = torch.cat([p_fake[index].mean(1) / shares
                      for index in bootstrap_indices(len(p_fake), n_bootstrap, rng)])  # fmt: skip
    tail = (1 - level) / 2
    lows, highs = torch.quantile(boot, tail, dim=0), torch.quantile(boot, 1 - tail, dim=0)
    p_real = probe.probabilities(real_features)
    real_shares = torch.bincount(real_labels.long(), minlength=len(shares)).double()
    on_reals = p_real.mean(0) / (real_shares / len(real_labels))
    rows = []
    for k in range(len(shares)):
        if not shares[k] > 0:
            rows.append(ProbeCoverage(k, math.nan, math.nan, math.nan, math.nan, False))
            continue
        rows.append(ProbeCoverage(k, float(estimate[k]), float(lows[k]), float(highs[k]),
                                  float(on_reals[k]), float(highs[k]) < flag))  # fmt: skip
    return rows
