"""Model families: each turns a ModelConfig plus the data's shape into G and D kwargs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from minmax.registry import Registry


@dataclass(frozen=True)
class ModelFamily:
    generator: type[nn.Module]
    discriminator: type[nn.Module]
    # (model config, data shape) -> (G kwargs, D kwargs); kwargs are JSON-able
    kwargs: Callable[[Any, tuple[int, ...]], tuple[dict, dict]]


MODELS: Registry[ModelFamily] = Registry("architecture")


def build_networks(cfg: Any, data_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module, dict]:
    """Build G and D for ``cfg.arch``; also return the spec that rebuilds them."""
    family = MODELS.get(cfg.arch)
    g_kwargs, d_kwargs = family.kwargs(cfg, data_shape)
    spec = {"arch": cfg.arch, "G": g_kwargs, "D": d_kwargs}
    return family.generator(**g_kwargs), family.discriminator(**d_kwargs), spec


def rebuild(spec: dict, role: str) -> nn.Module:
    """Rebuild ``role`` ("G" or "D") from a saved ``{"arch", "G", "D"}`` spec."""
    family = MODELS.get(spec["arch"])
    cls = family.generator if role == "G" else family.discriminator
    return cls(**spec[role])
