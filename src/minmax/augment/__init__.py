"""Differentiable augmentation of whole batches, applied to real and fake images alike."""

from __future__ import annotations

import torch

from minmax.augment.ada import ADA, DEFAULT_OPS, OPS, check_image_data, parse_ops
from minmax.augment.diffaugment import POLICIES, DiffAugment, parse_policy
from minmax.config import AugmentConfig

__all__ = [
    "ADA",
    "DEFAULT_OPS",
    "OPS",
    "POLICIES",
    "DiffAugment",
    "check_image_data",
    "make_augment",
    "parse_ops",
    "parse_policy",
]


def make_augment(
    cfg: AugmentConfig,
    rng: torch.Generator,
    batch_size: int,
    shape: tuple[int, ...] | None = None,
) -> DiffAugment | ADA:
    """What ``augment.*`` asks for: ADA when ``augment.ada``, else DiffAugment with
    ``augment.policy`` (the identity when empty). ``batch_size``: the global batch, which sets
    how far one ADA update moves p; ``shape``: one sample's, checked to be an image."""
    if not cfg.ada:
        return DiffAugment(cfg.policy, rng)
    if shape is not None:
        check_image_data(shape)
    return ADA(cfg.ada_ops, rng, target=cfg.ada_target, kimg=cfg.ada_kimg,
               interval=cfg.ada_interval, batch_size=batch_size,
               fixed_p=cfg.ada_fixed_p)  # fmt: skip
