"""Differentiable augmentation of whole batches, applied to real and fake images alike."""

from minmax.augment.diffaugment import POLICIES, DiffAugment, parse_policy

__all__ = ["POLICIES", "DiffAugment", "parse_policy"]
