"""Image datasets held in memory as uint8, and the dispatcher from a name or a path to one.

Images stay uint8 (N, C, H, W) - a quarter of float32's memory, so MNIST is 47 MB and
CIFAR-10 150 MB - and become float in [-1, 1] (x/127.5 - 1) only per batch, in ``sample``.

Sources: the named datasets (``mnist``, ``fashion-mnist``, ``cifar10``; from files under
``root``, downloaded and SHA-256 checked when missing; ``stacked-mnist``, composed per batch
from MNIST by minmax.data.stacked_mnist), a folder of images (class labels
from first-level sub-folders), or an .npz of uint8 images. Only the named datasets have a
test split; a folder or an .npz without ``x_test`` is one training set.

Resizing arrays (the named datasets, .npz) scales the shorter side to ``resolution`` with
antialiased bilinear interpolation and center-crops, up or down (MNIST 28 -> 32 is the usual
case). Folders are resized by Pillow and never upscaled (see minmax.data.folder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from minmax.data import cifar10, folder, mnist, npz_images
from minmax.data.download import default_root
from minmax.data.points import _looks_like_path
from minmax.errors import UsageError
from minmax.registry import did_you_mean

if TYPE_CHECKING:
    from minmax.data.stacked_mnist import StackedImages

IMAGE_DATASETS = ["mnist", "fashion-mnist", "cifar10", "stacked-mnist"]
SPLITS = ("train", "test")
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as Pillow's convert("L")
CHUNK_IMAGES = 4096  # images converted to float at once: bounds the peak memory

__all__ = [
    "IMAGE_DATASETS",
    "ImageDataset",
    "convert_channels",
    "default_root",
    "is_image_dataset",
    "load_images",
    "resize_images",
]


@dataclass(repr=False)
class ImageDataset:
    """uint8 images (N, C, H, W), C in {1, 3}, with int64 labels (N,) or None.

    ``skipped`` counts the files left out as unreadable (a folder loaded with skip_bad).
    """

    images: Tensor
    labels: Tensor | None
    n_classes: int
    name: str
    class_names: list[str] = field(default_factory=list)
    skipped: int = 0

    def __post_init__(self) -> None:
        images = self.images
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"images must be uint8 (N, C, H, W) with C in {{1, 3}}, got "
                f"{images.dtype} {tuple(images.shape)}"
            )
        self.images = images.contiguous()
        if self.labels is None:
            if self.n_classes != 0:
                raise ValueError("an unlabelled dataset has n_classes = 0")
        elif self.labels.dtype != torch.int64 or self.labels.shape != (len(images),):
            raise ValueError(
                f"labels must be int64 of shape ({len(images)},), got "
                f"{self.labels.dtype} {tuple(self.labels.shape)}"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, c, h, w = self.images.shape
        return (c, h, w)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        skipped = f", skipped={self.skipped}" if self.skipped else ""
        return (
            f"ImageDataset('{self.name}', n={len(self)}, shape={self.shape}, "
            f"n_classes={self.n_classes}{skipped})"
        )

    def sample(
        self, n: int, rng: torch.Generator, rows: slice | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """``n`` images drawn uniformly with replacement, as float32 in [-1, 1], and their labels.

        One indexing op per batch (no per-image Python), so sampling costs a memory copy.
        ``rows`` keeps part of the draw (a rank's share): the random stream advances by all
        ``n`` while only those images are gathered.
        """
        if n < 0:
            raise ValueError(f"cannot draw a negative number of images ({n})")
        index = torch.randint(len(self), (n,), generator=rng)
        if rows is not None:
            index = index[rows]
        x = self.images[index].to(torch.float32) / 127.5 - 1
        return x, None if self.labels is None else self.labels[index]


def convert_channels(images: Tensor, channels: int) -> Tensor:
    """uint8 (N, C, H, W) to ``channels``: gray -> RGB replicates, RGB -> gray uses BT.601 luma.

    ``channels`` 0 keeps the images as they are.
    """
    if channels in (0, images.shape[1]):
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
    gray = [(chunk * weights).sum(1, keepdim=True) for chunk in images.split(CHUNK_IMAGES)]
    return torch.cat([_to_uint8(chunk) for chunk in gray])


def _to_uint8(x: Tensor) -> Tensor:
    return x.round().clamp(0, 255).to(torch.uint8)


def resize_images(images: Tensor, resolution: int) -> Tensor:
    """uint8 (N, C, H, W) -> (N, C, resolution, resolution): shorter side scaled, center-cropped.

    Antialiased bilinear interpolation on float, rounded back to uint8; 0 keeps the size.
    """
    _, _, h, w = images.shape
    if resolution == 0 or (h, w) == (resolution, resolution):
        return images
    scale = resolution / min(h, w)
    size = (max(resolution, round(h * scale)), max(resolution, round(w * scale)))
    chunks = [
        _to_uint8(F.interpolate(chunk.float(), size=size, mode="bilinear", antialias=True))
        for chunk in images.split(CHUNK_IMAGES)
    ]
    resized = torch.cat(chunks)
    top, left = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    return resized[:, :, top : top + resolution, left : left + resolution].contiguous()


def _check_options(split: str, resolution: int, channels: int) -> None:
    if split not in SPLITS:
        raise UsageError(f"unknown split '{split}': choose train or test (data.split)")
    if not isinstance(resolution, int) or resolution < 0:
        raise UsageError(
            f"data.resolution must be 0 (the images' own size) or a positive number of "
            f"pixels, got {resolution}"
        )
    if channels not in (0, 1, 3):
        raise UsageError(
            f"data.channels must be 0 (as stored), 1 (grayscale) or 3 (RGB), got {channels}"
        )


def _dataset(
    name: str,
    arrays: tuple[np.ndarray, np.ndarray | None, list[str]],
    resolution: int,
    channels: int,
    labels: bool,
) -> ImageDataset:
    """Wrap a loader's uint8 (N, C, H, W) arrays, resized and converted as asked."""
    images_np, labels_np, class_names = arrays
    images = torch.from_numpy(np.require(images_np, np.uint8, ["C", "W"]))
    if channels == 1:  # to gray before resizing: a third of the work
        images = convert_channels(images, 1)
    images = convert_channels(resize_images(images, resolution), channels)
    if not labels or labels_np is None:
        return ImageDataset(images, None, 0, name, [])
    labels_t = torch.from_numpy(np.array(labels_np, dtype=np.int64))
    return ImageDataset(images, labels_t, len(class_names), name, list(class_names))


def _not_a_dataset(name: str) -> UsageError:
    path = Path(name).expanduser()
    if path.exists():
        return UsageError(
            f"'{path}' is not an image dataset: give a folder of images or an .npz of "
            "uint8 images (N, H, W) or (N, H, W, C)"
        )
    if _looks_like_path(name):
        return UsageError(f"dataset path '{path}' does not exist: check the path")
    return UsageError(
        f"unknown image dataset '{name}': {did_you_mean(name, IMAGE_DATASETS)} "
        "(or give a folder of images or an .npz of uint8 images)"
    )


def load_images(
    name: str,
    root: str | None = None,
    split: str = "train",
    resolution: int = 0,
    channels: int = 0,
    download: bool = True,
    labels: bool = True,
    skip_bad: bool = False,
) -> ImageDataset | StackedImages:
    """A named dataset, a folder of images or an .npz of uint8 images, in memory.

    ``root`` holds the named datasets' files (and downloads, and the folder decode cache);
    None means ``default_root()``. ``resolution`` 0 keeps the size; ``channels`` 0 keeps the
    channels, 1 converts to grayscale, 3 to RGB. ``labels=False`` drops class labels.
    A folder or an .npz has no test split unless the .npz holds ``x_test``. ``skip_bad``
    leaves a folder's unreadable files out (counted in ``.skipped``, and warned) instead of
    stopping; the other sources are single files, which are read whole or not at all.
    """
    _check_options(split, resolution, channels)
    root_path = Path(root).expanduser() if root else default_root()
    if name == "stacked-mnist":  # composed per batch from MNIST (minmax.data.stacked_mnist)
        from minmax.data.stacked_mnist import load_stacked_mnist

        return load_stacked_mnist(root_path, split, resolution, channels, download, labels)
    path = Path(name).expanduser()
    skipped = 0
    if name in ("mnist", "fashion-mnist"):
        arrays = mnist.load_mnist(name, root_path, split, download)
    elif name == "cifar10":
        arrays = cifar10.load_cifar10(root_path, split, download)
    elif path.is_dir():
        if split != "train":
            raise UsageError(
                f"image folder '{path}' has no '{split}' split: give the folder of "
                f"{split} images as data.name with data.split=train"
            )
        *arrays, bad_files = folder.load_folder(
            path, root_path, resolution, channels, labels, skip_bad
        )
        skipped = len(bad_files)
    elif path.is_file() and path.suffix.lower() == ".npz":
        arrays = npz_images.load_npz_images(path, split)
    else:
        raise _not_a_dataset(name)
    dataset_name = name if name in IMAGE_DATASETS else str(path)
    dataset = _dataset(dataset_name, tuple(arrays), resolution, channels, labels)
    dataset.skipped = skipped
    return dataset


def is_image_dataset(name: str) -> bool:
    """Whether ``name`` is a named image dataset, a folder, or an .npz of uint8 images.

    An .npz of N x d float points is not: those are minmax.data.points' business.
    """
    if name in IMAGE_DATASETS:
        return True
    path = Path(name).expanduser()
    if path.is_dir():
        return True
    return path.is_file() and path.suffix.lower() == ".npz" and npz_images.holds_images(path)
