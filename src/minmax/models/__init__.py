"""Architectures, registered by name and rebuilt from ``(arch, kwargs)`` (never pickled)."""

from minmax.models import mlp  # noqa: F401  (registers "mlp")
from minmax.models.registry import MODELS, ModelFamily, build_networks, rebuild

__all__ = ["MODELS", "ModelFamily", "build_networks", "rebuild"]
