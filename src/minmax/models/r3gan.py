"""R3GAN's modern ResNet ("The GAN is dead; long live the GAN!", Huang et al. NeurIPS 2024),
written from the paper's description, for 28-pixel images and powers of two from 8 to 1024.

Residual block: x + f(x), f = 1×1 conv (c -> e·c) -> LeakyReLU(0.2) -> grouped 3×3 conv
(e·c -> e·c, ``group_channels`` channels per group) -> LeakyReLU(0.2) -> 1×1 conv (e·c -> c):
an inverted bottleneck of expansion e. No normalisation layer anywhere (no batch, group or
layer norm, no spectral norm): the paper's loss (RpGAN + R1 + R2) keeps training stable.

Fix-up initialisation (Zhang et al. 2019): the last conv of every branch starts at zero, so
each block starts as the identity; the other two are He-initialised (gain for LeakyReLU 0.2)
and scaled by L^(−1/(2m−2)) = L^(−1/4), with L the network's number of blocks and m = 3 layers
per branch. Every bias starts at zero.

Resampling is low-pass filtered by the [1,2,1]⊗[1,2,1]/16 kernel (replicate padding, so a
constant map stays constant): up = nearest resize to the next side, then blur; down = blur,
then every second pixel (a side of 7 keeps pixels 0, 2, 4, 6: 7 -> 4). Sides: 4 -> 8 -> ...
-> 2^k, and 4 -> 7 -> 14 -> 28 for MNIST-sized images.

Stage widths: ``width · min(2^(k−i), max_width_factor)`` at the i-th side of k + 1 (widest at
4×4; factor 8 by default, 1 for the paper's CIFAR-10 model of one width throughout). Between
stages a 1×1 conv changes the width, on the smaller map: G converts, then upsamples; D
downsamples, then converts.

G: a learned 4×4 basis (C₀ channels) times a per-channel scale w = A·[z, embed(y)] + b (b
starts at 1; the class embedding joins z where conditional), the stages, a 1×1 conv to the
image channels, tanh (minmax's images are in [-1, 1]). D: a 1×1 conv from the image, the
stages down to 4×4, a depthwise 4×4 conv (the basis in reverse) to a vector φ, then
logit = w·φ + b, plus the projection term embed(y)·φ where conditional (Miyato & Koyama 2018).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minmax.errors import UsageError
from minmax.models.layers import need_labels, plain_kwargs, projection_logits
from minmax.models.registry import MODELS, ModelFamily

RESOLUTIONS = [8, 16, 28, 32, 64, 128, 256, 512, 1024]
SLOPE = 0.2  # LeakyReLU's negative slope
LOWPASS = (1.0, 2.0, 1.0)  # the 1-D resampling filter; the 2-D one is its outer product / 16
LAYERS_PER_BRANCH = 3  # m in the fix-up scale L^(−1/(2m−2))


def lowpass_kernel(dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The 3×3 low-pass kernel [1,2,1]ᵀ[1,2,1] / 16 (sums to 1)."""
    f = torch.tensor(LOWPASS, dtype=dtype, device=device)
    return torch.outer(f, f) / f.sum() ** 2


def blur(x: Tensor) -> Tensor:
    """Each channel convolved with ``lowpass_kernel`` (replicate padding: same side)."""
    c = x.shape[1]
    kernel = lowpass_kernel(x.dtype, x.device).expand(c, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)


def up(x: Tensor, side: int) -> Tensor:
    """Nearest resize to ``side`` (2× the input's side, or 4 -> 7), then blur."""
    return blur(F.interpolate(x, size=(side, side), mode="nearest"))


def down(x: Tensor) -> Tensor:
    """Blur, then every second pixel: side n -> ceil(n / 2)."""
    return blur(x)[..., ::2, ::2]


def sides(resolution: int) -> list[int]:
    """Feature-map sides from 4 to ``resolution``."""
    if resolution not in RESOLUTIONS:
        allowed = ", ".join(map(str, RESOLUTIONS))
        raise UsageError(f"r3gan supports {allowed}-pixel images, got {resolution}")
    if resolution == 28:
        return [4, 7, 14, 28]
    return [2**k for k in range(2, int(math.log2(resolution)) + 1)]


def stage_widths(n_sides: int, width: int, max_factor: int = 8) -> list[int]:
    """Channels at each side, 4×4 first: width · min(2^(k−i), max_factor)."""
    return [width * min(2 ** (n_sides - 1 - i), max_factor) for i in range(n_sides)]


class ResidualBlock(nn.Module):
    """x + conv1(lrelu(conv3_grouped(lrelu(conv1(x))))), the last conv zero at init."""

    def __init__(self, channels: int, expansion: int, group_channels: int, scale: float) -> None:
        super().__init__()
        inner = channels * expansion
        if inner % group_channels:
            raise UsageError(
                f"r3gan: a block of {channels} channels × model.expansion={expansion} is not a "
                f"multiple of model.group_channels={group_channels}: change one of them"
            )
        self.expand = nn.Conv2d(channels, inner, 1)
        self.mix = nn.Conv2d(inner, inner, 3, padding=1, groups=inner // group_channels)
        self.project = nn.Conv2d(inner, channels, 1)
        for conv in (self.expand, self.mix):
            nn.init.kaiming_normal_(conv.weight, a=SLOPE, nonlinearity="leaky_relu")
            conv.weight.data.mul_(scale)
        for conv in (self.expand, self.mix, self.project):
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.project.weight)

    def forward(self, x: Tensor) -> Tensor:
        h = F.leaky_relu(self.expand(x), SLOPE)
        h = F.leaky_relu(self.mix(h), SLOPE)
        return x + self.project(h)


def _stage(width: int, blocks: int, expansion: int, group_channels: int, scale: float):
    return nn.Sequential(
        *(ResidualBlock(width, expansion, group_channels, scale) for _ in range(blocks))
    )


def _conv1x1(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 1)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="linear")
    nn.init.zeros_(conv.bias)
    return conv


def _fixup_scale(n_sides: int, blocks_per_stage: int) -> float:
    total = n_sides * blocks_per_stage
    return total ** (-1 / (2 * LAYERS_PER_BRANCH - 2))


class R3GANGenerator(nn.Module):
    """x = G(z, y): (N, z_dim) [and (N,) classes] -> (N, channels, resolution, resolution)."""

    def __init__(
        self,
        z_dim: int,
        channels: int,
        resolution: int,
        width: int,
        n_classes: int = 0,
        blocks_per_stage: int = 2,
        expansion: int = 2,
        group_channels: int = 16,
        max_width_factor: int = 8,
    ) -> None:
        super().__init__()
        self.z_dim, self.n_classes = z_dim, n_classes
        self.sides = sides(resolution)
        widths = stage_widths(len(self.sides), width, max_width_factor)
        scale = _fixup_scale(len(self.sides), blocks_per_stage)
        if n_classes:
            self.embed = nn.Embedding(n_classes, z_dim)
        self.modulation = nn.Linear(z_dim * (2 if n_classes else 1), widths[0])
        nn.init.kaiming_normal_(self.modulation.weight, nonlinearity="linear")
        nn.init.ones_(self.modulation.bias)
        self.basis = nn.Parameter(torch.randn(widths[0], 4, 4))
        self.stages = nn.ModuleList(
            _stage(w, blocks_per_stage, expansion, group_channels, scale) for w in widths
        )
        self.transitions = nn.ModuleList(
            _conv1x1(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.to_image = _conv1x1(widths[-1], channels)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.n_classes:
            need_labels(self, y)
            z = torch.cat([z, self.embed(y)], 1)
        h = self.basis * self.modulation(z)[:, :, None, None]
        h = self.stages[0](h)
        steps = zip(self.sides[1:], self.transitions, self.stages[1:], strict=True)
        for side, transition, stage in steps:
            h = stage(up(transition(h), side))
        return torch.tanh(self.to_image(h))


class R3GANDiscriminator(nn.Module):
    """logits = D(x, y): (N, channels, resolution, resolution) [and (N,) classes] -> (N,)."""

    def __init__(
        self,
        channels: int,
        resolution: int,
        width: int,
        n_classes: int = 0,
        blocks_per_stage: int = 2,
        expansion: int = 2,
        group_channels: int = 16,
        max_width_factor: int = 8,
    ) -> None:
        super().__init__()
        self.n_classes = n_classes
        n_sides = len(sides(resolution))
        widths = stage_widths(n_sides, width, max_width_factor)[::-1]  # full resolution first
        scale = _fixup_scale(n_sides, blocks_per_stage)
        self.from_image = _conv1x1(channels, widths[0])
        self.stages = nn.ModuleList(
            _stage(w, blocks_per_stage, expansion, group_channels, scale) for w in widths
        )
        self.transitions = nn.ModuleList(
            _conv1x1(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        c = widths[-1]
        self.basis = nn.Conv2d(c, c, 4, groups=c)  # 4×4 map -> one value per channel
        nn.init.kaiming_normal_(self.basis.weight, nonlinearity="linear")
        nn.init.zeros_(self.basis.bias)
        self.fc = nn.Linear(c, 1)
        nn.init.zeros_(self.fc.bias)
        if n_classes:
            self.embed = nn.Embedding(n_classes, c)
            nn.init.normal_(self.embed.weight, 0.0, c**-0.5)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.stages[0](self.from_image(x))
        for transition, stage in zip(self.transitions, self.stages[1:], strict=True):
            h = stage(transition(down(h)))
        return projection_logits(self, self.basis(h).flatten(1), y)

    def input_blocks(self) -> list[nn.Module]:
        """From the input on: the 1×1 conv from the image with the first stage, then each
        (downsample + 1×1 conv, stage) pair; the 4×4 basis and heads are never a block."""
        first = nn.ModuleList([self.from_image, self.stages[0]])
        rest = [nn.ModuleList(p) for p in zip(self.transitions, self.stages[1:], strict=True)]
        return [first, *rest]


def _kwargs(cfg, data_shape: tuple[int, ...], n_classes: int = 0) -> tuple[dict, dict]:
    g, d = plain_kwargs("r3gan", cfg, data_shape, n_classes, RESOLUTIONS)
    if g.pop("spectral_norm") or d.pop("spectral_norm"):
        raise UsageError(
            "arch=r3gan has no normalisation layers: set model.g_spectral_norm=false and "
            "model.d_spectral_norm=false"
        )
    keys = ("blocks_per_stage", "expansion", "group_channels", "max_width_factor")
    shape = {key: getattr(cfg, key) for key in keys}
    if min(shape.values()) < 1:
        raise UsageError(f"model.{', model.'.join(keys)} must be 1 or more, got {shape}")
    return {**g, **shape}, {**d, **shape}


MODELS.add("r3gan", ModelFamily(R3GANGenerator, R3GANDiscriminator, _kwargs))
