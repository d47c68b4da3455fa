"""Every shipped preset resolves, validates and builds networks that run, without training."""

import pytest
import torch

from minmax.augment import parse_policy
from minmax.config import preset_names, resolve
from minmax.models import build_networks
from minmax.objectives import get_objective

NATIVE = {"mnist": (1, 28), "stacked-mnist": (3, 28), "cifar10": (3, 32), "./images": (3, 64)}


@pytest.mark.parametrize("name", preset_names())
def test_preset_builds_a_working_game(name):
    cfg = resolve(name)
    get_objective(cfg.loss.objective)
    parse_policy(cfg.augment.policy)
    if cfg.model.arch == "mlp":
        shape = (1,) if name == "mixture1d" else (2,)
    else:
        channels, side = NATIVE[cfg.data.name]
        side = cfg.data.resolution or side
        shape = (cfg.data.channels or channels, side, side)
    torch.manual_seed(0)
    G, D, spec = build_networks(cfg.model, shape, n_classes=10)
    y = torch.tensor([3, 7]) if G.n_classes else None
    x = G(torch.randn(2, cfg.model.z_dim), y)
    assert x.shape == (2, *shape)
    heads = (2,) if cfg.model.d_fourier else ()  # a Fourier head: a second logit per sample
    assert D(x, y).shape == (2, *heads)
    assert bool(cfg.model.conditional) == bool(G.n_classes)
