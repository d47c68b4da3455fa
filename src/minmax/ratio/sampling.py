"""Corrected samples from a run folder: its G proposes, its calibrated D weighs.

from minmax.ratio import sample_corrected
x, y, stats = sample_corrected("runs/00000-ring", "drs", 2500)
print(stats.line())
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from minmax.errors import UsageError
from minmax.ratio.calibrate import load_calibrated
from minmax.ratio.correct import CHAIN_LENGTH, POOL_FACTOR, Proposal, check_accept_target, correct
from minmax.ratio.run import conditional, draw_fakes, logits_of
from minmax.sample import load_generator


def generator_proposal(G: nn.Module, class_index: int | None = None) -> Proposal:
    """Q_G as a proposal: n draws of G(z[, y]) from the caller's generator."""
    if class_index is not None:
        n_classes = getattr(G, "n_classes", 0)
        if not n_classes:
            raise UsageError("--class needs a class-conditional generator; this one has no classes")
        if not 0 <= class_index < n_classes:
            raise UsageError(f"--class must be in 0..{n_classes - 1}, got {class_index}")

    def propose(n: int, rng: torch.Generator) -> tuple[Tensor, Tensor | None]:
        y = None if class_index is None else torch.full((n,), class_index, dtype=torch.long)
        return draw_fakes(G, n, rng, y)

    return propose


def sample_corrected(
    run_dir: str | Path,
    method: str,
    n: int,
    seed: int = 0,
    *,
    network: str = "G_ema",
    class_index: int | None = None,
    accept_target: float | None = None,
    chain_length: int = CHAIN_LENGTH,
    pool_factor: int = POOL_FACTOR,
):
    """n samples of ``network`` corrected by ``method`` with the run's calibrated D.

    A class-conditional model needs ``class_index``: D ≈ log p(x|y)/q(x|y) corrects within
    one class. Returns (x, y, :class:`~minmax.ratio.correct.CorrectionStats`).
    """
    check_accept_target(accept_target)
    G = load_generator(run_dir, network)
    if conditional(G) and class_index is None:
        raise UsageError(
            f"--correct on a class-conditional model needs --class K (0..{G.n_classes - 1}): "
            "the ratio is corrected within one class"
        )
    propose = generator_proposal(G, class_index)
    D, _ = load_calibrated(run_dir, G)

    def log_ratio(x: Tensor, y: Tensor | None) -> Tensor:
        return logits_of(D, x, y)

    return correct(method, propose, log_ratio, n, seed, accept_target=accept_target,
                   chain_length=chain_length, pool_factor=pool_factor)  # fmt: skip
