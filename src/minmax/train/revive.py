"""Code revival: a starved code of G moves to where D says the data are least covered.

A coded G (``minmax.models.codes``) finds a mode only when one of its codes drifts close
enough to feel D's pull there; a light mode far from every code can stay empty for the whole
run (the points benchmark lost the lightest of 40 modes in one seed of 80). D knows where it
is: at the optimum D*(x) = log P(x)/Q(x), so among real points the highest D marks where Q
puts least mass for P's. Meanwhile codes whose samples D scores low (more Q than P where they
sit: bridges between modes) have had their shares driven toward zero. Every
``train.code_revive_kimg`` (in the first half of the run) the most starved code, if its
share is below a quarter of the uniform 1/K, is moved there: its output offset puts its
centre on the real point with the highest D among a batch, and its logit is set to the
logits' mean (a share near 1/K). The idea is the dead-code restart of vector quantisers,
with the target chosen by the density ratio.

The draw has its own generator seeded by the step, so the run's random streams are untouched
and a resumed run revives the same codes; every rank computes the same move.
"""

from __future__ import annotations

import torch
from torch import nn

from minmax.config import TrainConfig
from minmax.data.sources import Source
from minmax.models.codes import code_prior
from minmax.objectives.losses import head_mean

STARVED = 0.25  # a code is starved below this fraction of the uniform share 1/K
REVIVE_BATCH = 4096  # real points scored by D to find the least covered one
REVIVE_UNTIL = 0.5  # revive only during this fraction of train.kimg: the moved codes settle


@torch.no_grad()
def revive_code(
    G: nn.Module, G_ema: nn.Module, D: nn.Module, source: Source, seed: int
) -> dict | None:
    """Move G's most starved code (and G_ema's) onto the real point D scores highest;
    returns what moved, or None when no code is starved."""
    prior = code_prior(G)
    if prior is None or prior.offset is None:
        return None
    shares = prior.shares()
    k = int(shares.argmin())
    if shares[k] >= STARVED / prior.codes:
        return None
    device = prior.logits.device
    real, labels = source.sample(REVIVE_BATCH, torch.Generator().manual_seed(seed))
    real = real.to(device)
    logits = head_mean(D(real, None if labels is None else labels.to(device))).float()
    best = int(logits.argmax())
    for g in (G, G_ema):
        g.move_code(k, real[best].flatten())
    return {"code": k, "share": float(shares[k]), "d_at_target": float(logits[best]),
            "d_median": float(logits.median())}  # fmt: skip


def revive_due(t: TrainConfig, images_seen: int, images_per_step: int) -> bool:
    """Whether this step crossed a multiple of ``train.code_revive_kimg`` within the first
    REVIVE_UNTIL of the run."""
    period = t.code_revive_kimg * 1000
    if not period or images_seen > REVIVE_UNTIL * t.kimg * 1000:
        return False
    return images_seen // period > (images_seen - images_per_step) // period
