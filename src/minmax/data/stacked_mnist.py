"""Stacked MNIST: 1,000 modes at image scale (VEEGAN, PacGAN, R3GAN).

Each 28×28 RGB image holds three MNIST digits, one per channel, each drawn independently and
uniformly from the MNIST split's images; its mode is the triple of digit labels, numbered
``100·d0 + 10·d1 + d2`` (0..999), which is also its class label. The training split is the
protocol's 128,000 images built from MNIST's 60,000 training digits; the test split is 10,000
built from MNIST's 10,000 test digits (no protocol asks for one; it is there so that
``eval.reference_split=test`` and ``--split test`` mean something).

Seeded without any library's random stream: draw ``j`` (image ``j // 3``, channel ``j % 3``)
takes MNIST image ``splitmix64(SEED[split], j) mod M`` (SplitMix64, Steele, Lea & Flood 2014,
in plain uint64 arithmetic; the modulo bias is below 1e-14), so the same MNIST files give the
same images on every machine and every version of numpy or torch.

Held as index triples (N × 3 int64: 3 MB) into MNIST's digits (47 MB), never as the
301 MB of composed images: a batch is composed by one gather, ``digits[triples[index]]``, which
costs what ``ImageDataset.sample``'s own gather does and draws from the random stream the same
way, so training sees what it would see from the composed array. ``.images`` composes the
whole set for code that wants every pixel at once (``minmax evaluate`` scoring the real set);
the run's data fingerprint hashes the digits and triples instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from minmax.data import mnist
from minmax.errors import UsageError

NAME = "stacked-mnist"
N_IMAGES = {"train": 128_000, "test": 10_000}
SEED = {"train": 0, "test": 1}
N_MODES = 1000
CLASS_NAMES = [f"{mode:03d}" for mode in range(N_MODES)]  # the digits, channel 0 first

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(seed: int, n: int) -> np.ndarray:
    """The first ``n`` outputs (uint64) of SplitMix64 started at ``seed``: output ``j`` mixes
    ``seed + (j + 1)·0x9E3779B97F4A7C15`` (mod 2^64) by two xor-shift-multiply rounds."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def draw_triples(n_images: int, n_digits: int, seed: int) -> Tensor:
    """(n_images, 3) int64 rows of the digit array: each channel's digit, independent draws."""
    draws = splitmix64(seed, 3 * n_images) % np.uint64(n_digits)
    return torch.from_numpy(draws.astype(np.int64).reshape(n_images, 3))


def mode_index(digit_labels: Tensor) -> Tensor:
    """(N, 3) digit labels 0..9 -> (N,) modes ``100·d0 + 10·d1 + d2``."""
    return digit_labels[:, 0] * 100 + digit_labels[:, 1] * 10 + digit_labels[:, 2]


@dataclass(repr=False)
class StackedImages:
    """Images composed on demand: channel c of image i is ``digits[triples[i, c]]``.

    Serves the trainer what ``ImageDataset`` does (``sample``, ``shape``, ``labels``,
    ``n_classes``, ``len``); ``images`` composes every image (uint8 (N, 3, H, W)).
    """

    digits: Tensor  # uint8 (M, 1, H, W)
    triples: Tensor  # int64 (N, 3), rows of ``digits``
    labels: Tensor | None  # int64 (N,) mode index, or None (unlabelled)
    n_classes: int
    name: str = NAME
    class_names: list[str] = field(default_factory=list)
    skipped: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        _, _, h, w = self.digits.shape
        return (3, h, w)

    def __len__(self) -> int:
        return self.triples.shape[0]

    def __repr__(self) -> str:
        return (
            f"StackedImages('{self.name}', n={len(self)}, shape={self.shape}, "
            f"n_classes={self.n_classes}, from {len(self.digits)} digits)"
        )

    def defining_tensors(self) -> dict[str, Tensor | None]:
        """What the images are made of, for the run's data fingerprint (without composing
        301 MB to hash it)."""
        return {"digits": self.digits, "triples": self.triples, "labels": self.labels}

    def compose(self, index: Tensor) -> Tensor:
        """uint8 (n, 3, H, W) images of the given rows: one gather."""
        return self.digits[self.triples[index]].flatten(1, 2)

    @property
    def images(self) -> Tensor:
        """Every image, composed (128,000 × 3 × 28 × 28 uint8: 301 MB for the training set)."""
        return self.compose(torch.arange(len(self)))

    def sample(
        self, n: int, rng: torch.Generator, rows: slice | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """As ``ImageDataset.sample``: ``n`` images drawn uniformly with replacement, float32
        in [-1, 1], and their labels; ``rows`` keeps part of the draw."""
        if n < 0:
            raise ValueError(f"cannot draw a negative number of images ({n})")
        index = torch.randint(len(self), (n,), generator=rng)
        if rows is not None:
            index = index[rows]
        x = self.compose(index).to(torch.float32) / 127.5 - 1
        return x, None if self.labels is None else self.labels[index]


def load_stacked_mnist(
    root: Path,
    split: str,
    resolution: int,
    channels: int,
    download: bool,
    labels: bool,
) -> StackedImages:
    """Stacked MNIST from MNIST's files (found, or fetched, exactly as ``mnist`` is).

    ``resolution`` resizes the digits before stacking (the same as resizing the stacked
    images: the resize works channel by channel). ``channels`` must be 0 or 3.
    """
    from minmax.data.images import resize_images

    if channels not in (0, 3):
        raise UsageError(
            f"{NAME} is 3-channel by construction (a digit per channel): data.channels must "
            f"be 0 or 3, got {channels}"
        )
    digit_pixels, digit_labels, _ = mnist.load_mnist("mnist", root, split, download)
    digits = torch.from_numpy(np.require(digit_pixels, np.uint8, ["C", "W"]))
    digits = resize_images(digits, resolution)
    triples = draw_triples(N_IMAGES[split], len(digits), SEED[split])
    if not labels:
        return StackedImages(digits, triples, None, 0)
    modes = mode_index(torch.from_numpy(np.asarray(digit_labels, np.int64))[triples])
    return StackedImages(digits, triples, modes, N_MODES, class_names=list(CLASS_NAMES))
