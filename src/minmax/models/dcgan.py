"""DCGAN (Radford et al. 2015) for 28, 32 and 64-pixel images.

G: z -> linear to a 7×7 (28 px) or 4×4 (32, 64 px) map of ``width · 2^(k−1)`` channels, then
k stride-2 ConvTranspose (kernel 4, pad 1) steps, each halving the channels after BN + ReLU;
the last one maps to the image channels and ends in tanh. For 28 px with width 64 that is
128@7×7 -> 64@14×14 -> C@28×28. D mirrors it: k stride-2 convs (kernel 4) with LeakyReLU(0.2)
doubling the channels (width, 2·width, ...), then one linear layer on the flattened map.

Choices:
- D has batch-norm (after every conv but the first) only when it has no spectral norm and
  ``model.d_batch_norm`` is on (the paper's D): SN already bounds each layer, and BN couples a
  sample's logit to its batch-mates, which gradient penalties and per-sample logits do not
  expect. ``batch_norm`` is its own kwarg.
- Conditional G uses class-conditional batch-norm (a γ, β per class in every BN, SNGAN/BigGAN
  style) rather than concatenating an embedding to z: it costs no extra convolution and
  reaches every layer. Conditional D adds the projection term (Miyato & Koyama 2018):
  logit = w·φ(x) + b + embed(y)·φ(x), φ = the flattened last feature map.
- Weights start from N(0, 0.02) as in the paper; convs followed by BN have no bias.
- ``model.g_extra_convs`` = k adds k 3×3 convs (each after BN + ReLU, same width) at each of
  G's sides before it upsamples: at 28 px the paper's G is two layers deep, and a 3×3 conv at
  7×7 or 14×14 costs little beside D's and G's transposed convs.
"""

from __future__ import annotations

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
)
from minmax.models.registry import MODELS, ModelFamily

RESOLUTIONS = [28, 32, 64]


def _init(layer: nn.Module, spectral_norm: bool) -> nn.Module:
    nn.init.normal_(layer.weight, 0.0, 0.02)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return maybe_sn(layer, spectral_norm)


def _check_resolution(resolution: int) -> None:
    if resolution not in RESOLUTIONS:
        raise UsageError(f"dcgan supports 28, 32 and 64-pixel images, got {resolution}")


class DCGANGenerator(nn.Module):
    """x = G(z, y): (N, z_dim) [and (N,) classes] -> (N, channels, resolution, resolution)."""

    def __init__(
        self,
        z_dim: int,
        channels: int,
        resolution: int,
        width: int,
        n_classes: int = 0,
        spectral_norm: bool = False,
        extra_convs: int = 0,
    ) -> None:
        super().__init__()
        _check_resolution(resolution)
        self.z_dim, self.n_classes = z_dim, n_classes
        self.start = START_SIDES[resolution]
        steps = n_doublings(resolution)
        widths = [width * 2 ** (steps - 1 - i) for i in range(steps)] + [channels]
        self.start_width = widths[0]
        self.fc = _init(nn.Linear(z_dim, widths[0] * self.start**2, bias=False), spectral_norm)
        self.norms = nn.ModuleList(ClassBatchNorm2d(w, n_classes) for w in widths[:-1])
        self.ups = nn.ModuleList(
            _init(
                nn.ConvTranspose2d(widths[i], widths[i + 1], 4, 2, 1, bias=i == steps - 1),
                spectral_norm,
            )
            for i in range(steps)
        )
        # created last, so that extra_convs=0 builds (and seeds) exactly the paper's G
        self.extra_norms = nn.ModuleList(
            nn.ModuleList(ClassBatchNorm2d(w, n_classes) for _ in range(extra_convs))
            for w in widths[:-1]
        )
        self.extra_convs = nn.ModuleList(
            nn.ModuleList(
                _init(nn.Conv2d(w, w, 3, 1, 1, bias=False), spectral_norm)
                for _ in range(extra_convs)
            )
            for w in widths[:-1]
        )

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.n_classes:
            need_labels(self, y)
        h = self.fc(z).view(-1, self.start_width, self.start, self.start)
        stages = zip(self.extra_norms, self.extra_convs, self.norms, self.ups, strict=True)
        for extra_norms, extra_convs, norm, up in stages:
            for extra_norm, conv in zip(extra_norms, extra_convs, strict=True):
                h = conv(F.relu(extra_norm(h, y), inplace=True))
            h = up(F.relu(norm(h, y), inplace=True))
        return torch.tanh(h)


class DCGANDiscriminator(nn.Module):
    """logits = D(x, y): (N, channels, resolution, resolution) [and (N,) classes] -> (N,)."""

    def __init__(
        self,
        channels: int,
        resolution: int,
        width: int,
        n_classes: int = 0,
        spectral_norm: bool = False,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        _check_resolution(resolution)
        self.n_classes = n_classes
        steps = n_doublings(resolution)
        widths = [channels] + [width * 2**i for i in range(steps)]
        layers: list[nn.Module] = []
        for i in range(steps):
            norm = batch_norm and i > 0
            conv = nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1, bias=not norm)
            layers.append(_init(conv, spectral_norm))
            if norm:
                layers.append(BatchNorm2d(widths[i + 1]))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.features = nn.Sequential(*layers)
        n_features = widths[-1] * START_SIDES[resolution] ** 2
        self.fc = _init(nn.Linear(n_features, 1), spectral_norm)
        if n_classes:
            self.embed = _init(nn.Embedding(n_classes, n_features), spectral_norm)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.features(x).flatten(1)
        return projection_logits(self, h, y)

    def input_blocks(self) -> list[nn.Module]:
        """Each stride-2 conv with its batch-norm and LeakyReLU, from the input on."""
        blocks: list[list[nn.Module]] = []
        for layer in self.features:
            if isinstance(layer, nn.Conv2d):
                blocks.append([])
            blocks[-1].append(layer)
        return [nn.ModuleList(block) for block in blocks]


def _kwargs(cfg, data_shape: tuple[int, ...], n_classes: int = 0) -> tuple[dict, dict]:
    g, d = plain_kwargs("dcgan", cfg, data_shape, n_classes, RESOLUTIONS)
    d["batch_norm"] = cfg.d_batch_norm and not cfg.d_spectral_norm
    g["extra_convs"] = cfg.g_extra_convs
    return g, d


MODELS.add("dcgan", ModelFamily(DCGANGenerator, DCGANDiscriminator, _kwargs))
