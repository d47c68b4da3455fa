"""Use a trained generator: load it from a run or an export and draw samples (no training code).

from minmax.sample import load_generator, generate
G = load_generator("runs/00000-mnist-dcgan")   # or an export folder ('minmax export')
x, y = generate(G, 64, seed=0)      # x in [-1, 1]; minmax.images.to_uint8(x) for pixels

Files are read by ``minmax.store``; nothing here imports ``minmax.train`` (a test checks).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from minmax.errors import UsageError
from minmax.models import rebuild
from minmax.models.codes import code_prior
from minmax.models.layers import truncated_normal
from minmax.store import (
    EXPORT_CONFIG,
    EXPORT_WEIGHTS,
    find_checkpoint,
    is_export,
    load_module,
    read_export,
    read_spec,
)


def load_generator(path: str | Path, which: str | None = None) -> nn.Module:
    """Rebuild G, in eval mode, from a run folder, one of its checkpoints, or an export.

    A run holds G and G_ema (``which``; G_ema, the EMA of G's weights, by default); an export
    holds the one network it was made from, and ``which`` may only name that one. A run on a
    points file trained standardised; its G is rebuilt with the saved map, so its samples are
    in the file's own units (``minmax.data.standardize``)."""
    if which not in (None, "G", "G_ema"):
        raise UsageError(f"unknown network '{which}': choose G_ema or G")
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"run folder '{path}' not found")
    if is_export(path):
        return _load_export(path, which)
    folder = path if (path / "state.json").is_file() else find_checkpoint(path)
    G = rebuild(read_spec(folder), "G")
    return load_module(folder, which or "G_ema", G).eval().requires_grad_(False)


def _load_export(folder: Path, which: str | None) -> nn.Module:
    """G from an export's config.json (its networks spec) and model.safetensors."""
    config = read_export(folder)
    held = config.get("network", "G_ema")
    if which not in (None, held):
        raise UsageError(f"export '{folder}' holds {held} only: drop --network {which}")
    where = folder / EXPORT_CONFIG
    try:
        G = rebuild(config, "G")
    except UsageError as err:  # an architecture this minmax does not know
        raise UsageError(f"'{where}': {err}") from None
    except (TypeError, ValueError, KeyError) as err:
        raise UsageError(
            f"'{where}': its \"G\" arguments do not fit architecture '{config['arch']}' ({err})"
        ) from None
    return load_module(folder, EXPORT_WEIGHTS, G).eval().requires_grad_(False)


def _labels(G: nn.Module, n: int, class_index: int | None, rng: torch.Generator) -> Tensor | None:
    n_classes = getattr(G, "n_classes", 0)
    if class_index is not None:
        if not n_classes:
            raise UsageError("--class needs a class-conditional generator; this one has no classes")
        if not 0 <= class_index < n_classes:
            raise UsageError(f"--class must be in 0..{n_classes - 1}, got {class_index}")
        return torch.full((n,), class_index, dtype=torch.long)
    return torch.randint(n_classes, (n,), generator=rng) if n_classes else None


@torch.no_grad()
def generate(
    G: nn.Module,
    n: int,
    seed: int = 0,
    *,
    class_index: int | None = None,
    truncation: float | None = None,
    batch: int = 1000,
) -> tuple[Tensor, Tensor | None]:
    """n samples x = G(z, y) and their classes y (None for unconditional G), from ``seed``.

    ``truncation`` (BigGAN's trick) redraws z entries beyond ±truncation: fewer odd samples,
    less variety. It spares a discrete code's coordinate, which would otherwise drop the codes
    at the ends. Classes are uniform unless ``class_index`` fixes one.
    """
    if n <= 0:
        raise UsageError(f"--n must be positive, got {n}")
    if truncation is not None and not truncation > 0:
        raise UsageError(f"--truncation must be positive, got {truncation}")
    rng = torch.Generator().manual_seed(seed)
    z = truncated_normal(n, G.z_dim, truncation, rng)
    if truncation is not None and code_prior(G) is not None:
        z[:, 0] = torch.randn(n, generator=rng)
    y = _labels(G, n, class_index, rng)
    device = next(G.parameters(), torch.empty(0)).device
    blocks = [
        G(zb.to(device), None if y is None else y[i : i + batch].to(device)).cpu()
        for i, zb in zip(range(0, n, batch), z.split(batch), strict=True)
    ]
    return torch.cat(blocks), y


def sample(G: nn.Module, n: int, seed: int = 0, batch: int = 8192) -> Tensor:
    """n samples x = G(z), z ~ N(0, I), reproducible from ``seed`` (unconditional G)."""
    return generate(G, n, seed, batch=batch)[0]


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Points on the great circle from z ``a`` to z ``b`` (both (d,)) at fractions ``t`` (T,).

    Gaussian z concentrate near a sphere of radius √d; a straight line between two of them
    passes through lower-norm points G rarely saw, a great circle does not.
    """
    cos = torch.dot(a / a.norm(), b / b.norm()).clamp(-1 + 1e-7, 1 - 1e-7)
    omega = torch.acos(cos)
    t = t[:, None]
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


@torch.no_grad()
def interpolate(
    G: nn.Module, n_points: int = 4, steps: int = 16, seed: int = 0, class_index: int | None = None
) -> Tensor:
    """A closed latent walk through ``n_points`` random z: (n_points·steps, C, H, W) frames."""
    if n_points < 2 or steps < 1:
        raise UsageError("an interpolation needs --points >= 2 and --steps >= 1")
    rng = torch.Generator().manual_seed(seed)
    keys = torch.randn(n_points, G.z_dim, generator=rng)
    t = torch.arange(steps, dtype=torch.float32) / steps
    z = torch.cat([slerp(keys[i], keys[(i + 1) % n_points], t) for i in range(n_points)])
    y = _labels(G, 1, class_index, rng)
    y = None if y is None else y.expand(len(z))
    return G(z, y)


def save_samples(x: Tensor, out: str | Path, y: Tensor | None = None) -> Path:
    """Write samples by the file's suffix.

    Images (N, C, H, W): ``.png`` a grid, ``.npz`` uint8 array ``x`` (N, H, W[, C]) with labels
    ``y``, or a folder name without suffix for one PNG per sample. Points (N, d): ``.npy``,
    ``.npz`` (array ``x``) or ``.png`` (a scatter plot).
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if x.ndim == 4:
        return _save_images(x, out, y)
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


def _save_images(x: Tensor, out: Path, y: Tensor | None) -> Path:
    from minmax.images import save_grid, to_uint8

    images = to_uint8(x)
    suffix = out.suffix.lower()
    if suffix not in ("", ".png", ".npz"):
        raise UsageError(f"cannot write '{out}': use .png (grid), .npz, or a folder name")
    if suffix == ".png":
        return save_grid(images, out, math.ceil(math.sqrt(len(images))))
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npz":
        pixels = images.permute(0, 2, 3, 1).numpy()
        pixels = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
        arrays = {"x": pixels} if y is None else {"x": pixels, "y": y.numpy()}
        np.savez(out, **arrays)
        return out
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"folder '{out}' is not empty: choose a new folder for single PNGs")
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(out / f"{i:06d}.png")
    return out
