"""Exponential moving average of G's weights (G_ema), the network we sample and evaluate."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """θ_ema ← β·θ_ema + (1−β)·θ; buffers are copied. β = 0 makes G_ema a copy of G."""
    torch._foreach_lerp_(list(G_ema.parameters()), list(G.parameters()), 1.0 - beta)
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)
