"""Use a trained generator: load it from a run folder and draw samples (no training code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from minmax.errors import UsageError
from minmax.models import rebuild
from minmax.train.checkpoint import find_checkpoint, load_module, read_spec


def load_generator(path: str | Path, which: str = "G_ema") -> nn.Module:
    """Rebuild G (or G_ema) from a run folder or its ``checkpoint/`` folder, in eval mode."""
    if which not in ("G", "G_ema"):
        raise UsageError(f"unknown network '{which}': choose G_ema or G")
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"run folder '{path}' not found")
    folder = path if (path / "state.json").is_file() else find_checkpoint(path)
    G = rebuild(read_spec(folder), "G")
    return load_module(folder, which, G).eval().requires_grad_(False)


@torch.no_grad()
def sample(G: nn.Module, n: int, seed: int = 0, batch: int = 8192) -> Tensor:
    """n samples x = G(z), z ~ N(0, I), reproducible from ``seed``."""
    if n <= 0:
        raise UsageError(f"--n must be positive, got {n}")
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return torch.cat([G(block) for block in z.split(batch)])


def save_samples(x: Tensor, out: str | Path) -> Path:
    """Write samples by the file's suffix: .npy/.npz (array ``x``) or .png (a plot)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".npy", ".npz", ".png"):
        raise UsageError(f"cannot write '{out}': use a .png, .npy or .npz file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    array = x.numpy()
    if suffix == ".npy":
        np.save(out, array)
    elif suffix == ".npz":
        np.savez(out, x=array)
    else:
        from minmax.plots import plot_points

        plot_points(x[:0], x, out, f"{len(x)} samples")
    return out
