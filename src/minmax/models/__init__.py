"""Architectures, registered by name and rebuilt from ``(arch, kwargs)`` (never pickled)."""

from minmax.models import biggan, dcgan, mlp, r3gan, resnet  # noqa: F401  (register themselves)
from minmax.models.registry import MODELS, ModelFamily, build_networks, d_blocks, rebuild

__all__ = ["MODELS", "ModelFamily", "build_networks", "d_blocks", "rebuild"]
