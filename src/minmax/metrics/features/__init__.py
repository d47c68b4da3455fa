"""Feature extractors: uint8 images in, float64 feature matrices (and class probabilities) out.

Every extractor states what a score computed from it depends on -- ``name``, the SHA-256 of
its weights, its ``input_size``, ``channels``, feature ``dim``, number of classes and its
``resize`` rule -- so scores and cached reference statistics can carry their protocol.

Images are (N, C, H, W) uint8 tensors (or numpy arrays; (N, H, W) is read as grayscale).
Each extractor converts them by its own documented rule: grayscale is replicated to RGB for
an RGB net, RGB given to a grayscale net is refused (no silent colour-to-gray conversion),
and other sizes are resized to ``input_size`` as ``resize`` says.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from minmax.errors import UsageError

NHWC = torch.channels_last


class FeatureExtractor(ABC):
    """A frozen network plus its input rule. Subclasses set the attributes and ``prepare``.

    ``net(x)`` must return ``(features, logits)``: features (n, dim) and logits
    (n, num_classes), or ``None`` when the net is not a classifier (``num_classes == 0``).
    """

    name: str
    weights_sha256: str
    input_size: tuple[int, int]
    channels: int
    dim: int
    num_classes: int
    resize: str

    def __init__(self, net: nn.Module, device: str | torch.device = "cpu") -> None:
        # Channels-last: oneDNN's convolutions run Inception 1.5x faster on this CPU (measured).
        self.device = torch.device(device)
        self.net = net.eval().requires_grad_(False).to(self.device, memory_format=NHWC)

    @abstractmethod
    def prepare(self, images: Tensor) -> Tensor:
        """A (n, C, H, W) uint8 batch on ``self.device`` -> the net's float input."""

    def run(
        self, images: Tensor | np.ndarray, batch_size: int = 200
    ) -> tuple[np.ndarray, np.ndarray]:
        """(features (N, dim), probs (N, num_classes)) in float64; probs is softmax(logits),
        an empty (N, 0) array when the net is not a classifier."""
        images = as_uint8_images(images)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        features, probs = [], []
        # A bar on a terminal only (tqdm's disable=None): Inception takes minutes on a CPU.
        batches = tqdm(images.split(batch_size), desc=f"{self.name} features", unit="batch",
                       disable=None, leave=False)  # fmt: skip
        with torch.no_grad():
            for batch in batches:
                x = self.prepare(batch.to(self.device)).contiguous(memory_format=NHWC)
                f, logits = self.net(x)
                features.append(f.double().cpu())
                if logits is not None:
                    probs.append(torch.softmax(logits.double(), dim=1).cpu())
        feats = torch.cat(features).numpy() if features else np.zeros((0, self.dim))
        p = torch.cat(probs).numpy() if probs else np.zeros((feats.shape[0], 0))
        return feats, p

    def features(self, images: Tensor | np.ndarray, batch_size: int = 200) -> np.ndarray:
        """(N, dim) float64 features."""
        return self.run(images, batch_size)[0]

    def probs(self, images: Tensor | np.ndarray, batch_size: int = 200) -> np.ndarray:
        """(N, num_classes) float64 class probabilities (softmax of the logits)."""
        if not self.num_classes:
            raise UsageError(f"the '{self.name}' feature extractor is not a classifier")
        return self.run(images, batch_size)[1]

    def describe(self) -> dict:
        """The protocol fields, JSON-ready (for score reports and cache keys)."""
        return {
            "name": self.name,
            "weights_sha256": self.weights_sha256,
            "input_size": list(self.input_size),
            "channels": self.channels,
            "dim": self.dim,
            "num_classes": self.num_classes,
            "resize": self.resize,
        }


def as_uint8_images(images: Tensor | np.ndarray) -> Tensor:
    """Check and return (N, C, H, W) uint8 images; (N, H, W) gets a channel axis."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if images.dtype != torch.uint8:
        raise UsageError(
            f"images must be uint8 in 0..255, got {images.dtype}: convert generator output in "
            "[-1, 1] with ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)"
        )
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise UsageError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    return images


def match_channels(images: Tensor, channels: int, name: str) -> Tensor:
    """Grayscale -> RGB by replication for a 3-channel net; anything else must match."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1)
    raise UsageError(
        f"the '{name}' feature extractor takes {channels}-channel images, got {have} channels"
        + (
            "; it has no colour-to-grayscale rule, use a 3-channel extractor"
            if channels == 1
            else ""
        )
    )


def _tf1_weights(n_in: int, n_out: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(n_out, n_in) matrix of TensorFlow 1.x ResizeBilinear (align_corners=False) weights:
    output i samples input position i * n_in / n_out (no half-pixel offset), interpolating
    between floor(.) and the next index clamped to the edge."""
    # float32 arithmetic, as TF computes the source position (``i * scale`` in float).
    scale = torch.tensor(n_in / n_out, dtype=torch.float32)
    position = torch.arange(n_out, dtype=torch.float32) * scale
    lo = position.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = position - lo.float()
    weights = torch.zeros(n_out, n_in, dtype=torch.float32)
    rows = torch.arange(n_out)
    weights.index_put_((rows, lo), 1.0 - frac, accumulate=True)
    weights.index_put_((rows, hi), frac, accumulate=True)
    return weights.to(dtype=dtype, device=device)


def resize_tf1_bilinear(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of float (n, c, H, W) to ``size`` as TF 1.x's ResizeBilinear does
    (the resize inside the TF FID reference graph; torch-fidelity calls it
    ``interpolate_bilinear_2d_like_tensorflow1x``). Separable: rows, then columns."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    w_rows = _tf1_weights(x.shape[-2], size[0], x.dtype, x.device)
    w_cols = _tf1_weights(x.shape[-1], size[1], x.dtype, x.device)
    return torch.einsum("oh,nchw,pw->ncop", w_rows, x, w_cols)


def resize_torch_bilinear(x: Tensor, size: tuple[int, int], antialias: bool) -> Tensor:
    """``F.interpolate(mode="bilinear", align_corners=False)`` (half-pixel centres)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias)
