"""Is the run still healthy? Non-finite values, and the classic signs of a failing GAN.

Checked where the loop reads the host anyway (each log line) and before each checkpoint, so
a healthy step never waits on the device. A non-finite loss or weight is handled by the
``train.on_nonfinite`` policy (the loop's job); the failure signs only warn, once each:

- D wins: D's loss near 0 for ``window`` log lines in a row while G's loss rises (G then gets
  little useful gradient; the text's saturating G gets none at all);
- collapse: G_ema's samples on fixed noise spread less than a tenth as much as real data.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

# objectives whose D loss is ≥ 0 and → 0 exactly when D separates real from fake
D_WINS_OBJECTIVES = {"nonsaturating", "saturating", "hinge", "lsgan", "rpgan"}


def nonfinite(networks: dict[str, nn.Module]) -> list[str]:
    """Names (``G.fc.weight``) of parameters holding NaN or ±Inf: one host read for all."""
    names, flags = [], []
    for net, module in networks.items():
        for name, p in module.named_parameters():
            names.append(f"{net}.{name}")
            flags.append(torch.isfinite(p).all())
    if not flags:
        return []
    ok = torch.stack(flags).cpu().tolist()
    return [name for name, good in zip(names, ok, strict=True) if not good]


def spread(x: Tensor) -> float:
    """Mean pairwise Euclidean distance between the rows of ``x`` (flattened)."""
    flat = x.flatten(1).double()
    n = len(flat)
    if n < 2:
        return 0.0
    return float(torch.pdist(flat).sum() * 2 / (n * (n - 1)))


@dataclass
class Health:
    objective: str
    window: int = 5  # log lines
    d_floor: float = 0.05
    collapse_ratio: float = 0.1
    recent: deque = field(default_factory=lambda: deque(maxlen=5))
    warned: set = field(default_factory=set)

    def losses(self, loss_d: float, loss_g: float) -> list[str]:
        """What is non-finite among the logged losses."""
        return [n for n, v in (("loss_D", loss_d), ("loss_G", loss_g)) if not math.isfinite(v)]

    def d_wins(self, loss_d: float, loss_g: float) -> str | None:
        """A warning, the first time D's loss has sat near 0 for a window while G's rose."""
        if self.objective not in D_WINS_OBJECTIVES or "d_wins" in self.warned:
            return None
        self.recent.append((loss_d, loss_g))
        if len(self.recent) < self.recent.maxlen:
            return None
        ds, gs = zip(*self.recent, strict=True)
        if max(ds) < self.d_floor and gs[-1] > gs[0]:
            self.warned.add("d_wins")
            return (
                f"D is winning: its loss stayed below {self.d_floor} for {len(ds)} log lines "
                f"while G's rose ({gs[0]:.3g} -> {gs[-1]:.3g}); G learns little from here. "
                "Try R1 (loss.r1_gamma), DiffAugment (augment.policy) or a lower train.lr_d"
            )
        return None

    def collapse(self, fake: Tensor, real: Tensor) -> str | None:
        """A warning, the first time G's samples spread far less than real data do."""
        if "collapse" in self.warned:
            return None
        ratio = spread(fake) / max(spread(real), 1e-12)
        if ratio < self.collapse_ratio:
            self.warned.add("collapse")
            return (f"mode collapse: G_ema's samples on fixed noise spread {ratio:.3f}× as much "
                    "as real data; its samples are nearly all alike")  # fmt: skip
        return None
