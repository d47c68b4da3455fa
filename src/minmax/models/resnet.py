"""SNGAN's residual networks (Miyato et al. 2018) for 32 and 64-pixel images (and 28 from 7×7).

G: z -> linear to a 4×4 map (7×7 for 28 px) of ``width · 2^(k−1)`` channels, then k up-blocks
(BN-ReLU-upsample-conv3-BN-ReLU-conv3, plus a 1×1-conv shortcut of the upsampled input when
the width changes), halving the channels down to ``width``; then BN-ReLU-conv3-tanh. D: an
"optimized" first down-block (conv3-ReLU-conv3-avgpool, shortcut avgpool-conv1×1), then
pre-activation down-blocks doubling the channels (width, 2·width, ...) until 4×4 (7×7),
ReLU, global sum pooling, linear. At width 64 and 32 px: G 256@4 -> 128@8 -> 64@16 -> 64@32,
D 64@16 -> 128@8 -> 256@4 (SNGAN's CIFAR nets keep 256 / 128 channels throughout; scale
``model.g_channels`` / ``d_channels`` for that).

Conditional: class-conditional batch-norm in G and the projection term in D
(logit = w·φ + b + embed(y)·φ, φ = the summed features). Initialisation as SNGAN's code:
Xavier-uniform, gain √2 in the residual branches, 1 for shortcuts and the ends.

The blocks take their normalisation and initialiser from the caller, so BigGAN reuses them.
A 1×1 conv commutes with nearest upsampling and with average pooling, so the shortcuts run
the conv at the lower resolution: the same function at a quarter of the cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minmax.errors import UsageError
from minmax.models.layers import (
    START_SIDES,
    BatchNorm2d,
    ClassBatchNorm2d,
    maybe_sn,
    n_doublings,
    need_labels,
    plain_kwargs,
    projection_logits,
    upsample,
)
from minmax.models.registry import MODELS, ModelFamily

RESOLUTIONS = [28, 32, 64]
Init = Callable[[Tensor, float], object]  # (weight, gain) -> None, in place


def xavier(weight: Tensor, gain: float) -> None:
    nn.init.xavier_uniform_(weight, gain)


def make_layer(layer: nn.Module, init: Init, gain: float, spectral_norm: bool) -> nn.Module:
    init(layer.weight, gain)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return maybe_sn(layer, spectral_norm)


def generator_widths(resolution: int, width: int) -> list[int]:
    """Channels of G's maps at each side, first to last: halving, never below ``width``."""
    steps = n_doublings(resolution)
    return [width * 2 ** max(steps - 1 - i, 0) for i in range(steps + 1)]


def discriminator_widths(resolution: int, width: int) -> list[int]:
    """Channels after each of D's down-blocks: width, 2·width, ... (one per halving)."""
    return [width * 2**i for i in range(n_doublings(resolution))]


class GBlock(nn.Module):
    """Pre-activation up-block; ``norm(channels)`` modules are called as ``norm(h, cond)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm: Callable[[int], nn.Module],
        init: Init,
        spectral_norm: bool,
    ) -> None:
        super().__init__()
        root2 = math.sqrt(2)
        self.norm1 = norm(in_channels)
        self.conv1 = make_layer(
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False), init, root2, spectral_norm
        )
        self.norm2 = norm(out_channels)
        self.conv2 = make_layer(
            nn.Conv2d(out_channels, out_channels, 3, 1, 1), init, root2, spectral_norm
        )
        self.shortcut = None
        if in_channels != out_channels:
            conv = nn.Conv2d(in_channels, out_channels, 1)
            self.shortcut = make_layer(conv, init, 1.0, spectral_norm)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.conv1(upsample(F.relu(self.norm1(x, cond), inplace=True)))
        h = self.conv2(F.relu(self.norm2(h, cond), inplace=True))
        skip = x if self.shortcut is None else self.shortcut(x)
        return h + upsample(skip)


class DBlock(nn.Module):
    """Down-block: ``first`` is SNGAN's optimized block (no leading ReLU on the image)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        init: Init,
        spectral_norm: bool,
        first: bool = False,
        downsample: bool = True,
    ) -> None:
        super().__init__()
        root2 = math.sqrt(2)
        self.first, self.downsample = first, downsample
        self.conv1 = make_layer(
            nn.Conv2d(in_channels, out_channels, 3, 1, 1), init, root2, spectral_norm
        )
        self.conv2 = make_layer(
            nn.Conv2d(out_channels, out_channels, 3, 1, 1), init, root2, spectral_norm
        )
        self.shortcut = None
        if in_channels != out_channels or downsample:
            conv = nn.Conv2d(in_channels, out_channels, 1)
            self.shortcut = make_layer(conv, init, 1.0, spectral_norm)

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h), inplace=True))
        skip = x
        if self.downsample:
            h, skip = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
        if self.shortcut is not None:
            skip = self.shortcut(skip)
        return h + skip


def check_resolution(arch: str, resolution: int) -> None:
    if resolution not in RESOLUTIONS:
        raise UsageError(f"{arch} supports 28, 32 and 64-pixel images, got {resolution}")


class ResNetGenerator(nn.Module):
    """x = G(z, y): (N, z_dim) [and (N,) classes] -> (N, channels, resolution, resolution)."""

    def __init__(
        self,
        z_dim: int,
        channels: int,
        resolution: int,
        width: int,
        n_classes: int = 0,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        check_resolution("resnet", resolution)
        self.z_dim, self.n_classes = z_dim, n_classes
        self.start = START_SIDES[resolution]
        widths = generator_widths(resolution, width)
        self.start_width = widths[0]
        fc = nn.Linear(z_dim, widths[0] * self.start**2)
        self.fc = make_layer(fc, xavier, 1.0, spectral_norm)
        self.blocks = nn.ModuleList(
            GBlock(a, b, lambda c: ClassBatchNorm2d(c, n_classes), xavier, spectral_norm)
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.out_norm = BatchNorm2d(widths[-1])
        out = nn.Conv2d(widths[-1], channels, 3, 1, 1)
        self.out = make_layer(out, xavier, 1.0, spectral_norm)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.n_classes:
            need_labels(self, y)
        h = self.fc(z).view(-1, self.start_width, self.start, self.start)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out(F.relu(self.out_norm(h), inplace=True)))


class ResNetDiscriminator(nn.Module):
    """logits = D(x, y): (N, channels, resolution, resolution) [and (N,) classes] -> (N,)."""

    def __init__(
        self,
        channels: int,
        resolution: int,
        width: int,
        n_classes: int = 0,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        check_resolution("resnet", resolution)
        self.n_classes = n_classes
        widths = [channels, *discriminator_widths(resolution, width)]
        self.blocks = nn.Sequential(
            *(
                DBlock(widths[i], widths[i + 1], xavier, spectral_norm, first=i == 0)
                for i in range(len(widths) - 1)
            )
        )
        self.fc = make_layer(nn.Linear(widths[-1], 1), xavier, 1.0, spectral_norm)
        if n_classes:
            embed = nn.Embedding(n_classes, widths[-1])
            self.embed = make_layer(embed, xavier, 1.0, spectral_norm)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = F.relu(self.blocks(x)).sum((2, 3))
        return projection_logits(self, h, y)

    def input_blocks(self) -> list[nn.Module]:
        """The down-blocks, from the input on."""
        return list(self.blocks)


def _kwargs(cfg, data_shape: tuple[int, ...], n_classes: int = 0) -> tuple[dict, dict]:
    g, d = plain_kwargs("resnet", cfg, data_shape, n_classes, RESOLUTIONS)
    return g, d


MODELS.add("resnet", ModelFamily(ResNetGenerator, ResNetDiscriminator, _kwargs))
