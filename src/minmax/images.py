"""Generated images as files: uint8 conversion, sample grids (PNG) and animations (GIF/WebP)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def to_uint8(x: Tensor) -> Tensor:
    """Images in [-1, 1] (N, C, H, W) -> uint8 0..255, as the data were scaled (x/127.5 - 1)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def make_grid(images: Tensor, n_cols: int | None = None, pad: int = 2) -> np.ndarray:
    """uint8 (N, C, H, W) -> one (rows·H, cols·W, C) image with ``pad`` pixels between tiles."""
    n, c, h, w = images.shape
    n_cols = n_cols or math.ceil(math.sqrt(n))
    n_rows = math.ceil(n / n_cols)
    canvas = np.full((n_rows * (h + pad) + pad, n_cols * (w + pad) + pad, c), 255, np.uint8)
    tiles = images.permute(0, 2, 3, 1).cpu().numpy()
    for i, tile in enumerate(tiles):
        row, col = divmod(i, n_cols)
        top, left = pad + row * (h + pad), pad + col * (w + pad)
        canvas[top : top + h, left : left + w] = tile
    return canvas


def _pil(array: np.ndarray) -> Image.Image:
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def save_grid(images: Tensor, path: str | Path, n_cols: int | None = None) -> Path:
    """Write uint8 (N, C, H, W) images as one PNG grid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _pil(make_grid(images, n_cols)).save(path)
    return path


def save_animation(frames: list[np.ndarray], path: str | Path, ms_per_frame: int = 80) -> Path:
    """Write (H, W, C) uint8 frames as a looping GIF or WebP (by the file's suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [_pil(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)
    return path
