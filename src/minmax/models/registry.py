"""Model families: each turns a ModelConfig plus the data's shape into G and D kwargs.

The contract every family keeps:

- ``G(z, y=None) -> x``: z of shape (N, G.z_dim); y (N,) int64 class indices when
  ``G.n_classes > 0`` (conditional), else None. Images come out (N, C, H, W) in [-1, 1].
- ``D(x, y=None) -> logits`` of shape (N,): any real number, as the founding text writes D;
  or (N, K) for a D with K heads, each its own discriminator (``objectives.flat_logits``);
  ``objectives.head_mean`` turns that into one log-ratio estimate per sample.
- Both are rebuilt from JSON-able kwargs (``rebuild``), never unpickled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from minmax.data.standardize import in_user_units
from minmax.errors import UsageError
from minmax.registry import Registry


@dataclass(frozen=True)
class ModelFamily:
    generator: type[nn.Module]
    discriminator: type[nn.Module]
    # (model config, data shape, number of classes; 0 = unconditional) -> (G kwargs, D kwargs);
    # kwargs are JSON-able. Raise UsageError for shapes the family cannot make.
    kwargs: Callable[[Any, tuple[int, ...], int], tuple[dict, dict]]


MODELS: Registry[ModelFamily] = Registry("architecture")


def build_networks(
    cfg: Any, data_shape: tuple[int, ...], n_classes: int = 0
) -> tuple[nn.Module, nn.Module, dict]:
    """Build G and D for ``cfg.arch``; also return the spec that rebuilds them."""
    family = MODELS.get(cfg.arch)
    g_kwargs, d_kwargs = family.kwargs(cfg, data_shape, n_classes)
    if getattr(cfg, "codes", 0) and "codes" not in g_kwargs:
        raise UsageError(f"model.codes works with model.arch=mlp only, got arch '{cfg.arch}'")
    if getattr(cfg, "d_fourier", 0) and "fourier" not in d_kwargs:
        raise UsageError(f"model.d_fourier works with model.arch=mlp only, got arch '{cfg.arch}'")
    spec = {"arch": cfg.arch, "G": g_kwargs, "D": d_kwargs}
    return family.generator(**g_kwargs), family.discriminator(**d_kwargs), spec


def d_blocks(D: nn.Module) -> list[nn.Module]:
    """D's blocks from the input on: the units ``train.freeze_d`` counts (FreezeD, Mo et al.
    2020). Each family's D says what a block is (its ``input_blocks``): dcgan, one stride-2
    conv with its batch-norm and activation; resnet and biggan, one down-block (biggan's
    attention joins the block it follows); mlp, one hidden layer of each head. The output
    layers (linear head, class projection) are never a block."""
    blocks = getattr(D, "input_blocks", None)
    if blocks is None:
        raise UsageError(f"{type(D).__name__} does not list its blocks: train.freeze_d needs it")
    return blocks()


def rebuild(spec: dict, role: str) -> nn.Module:
    """Rebuild ``role`` ("G" or "D") from a saved ``{"arch", "G", "D"}`` spec; with the spec's
    ``"units"`` (a standardised points run), in the user's units (``minmax.data.standardize``)."""
    family = MODELS.get(spec["arch"])
    cls = family.generator if role == "G" else family.discriminator
    return in_user_units(cls(**spec[role]), spec, role)
