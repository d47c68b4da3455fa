"""minmax: train GANs, check their theory on known densities, and share trained generators.

``minmax.load_generator(path)`` rebuilds a trained G from a run folder or an export folder,
and ``minmax.generate(G, n, seed)`` draws from it. Both load on first use, so ``import minmax``
stays cheap (no torch import until then).
"""

from __future__ import annotations

from typing import Any

__all__ = ["generate", "load_generator"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from minmax import sample

        return getattr(sample, name)
    raise AttributeError(f"module 'minmax' has no attribute '{name}'")
