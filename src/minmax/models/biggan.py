"""BigGAN (Brock et al. 2019) at small scale: 28 (from a 7×7 start), 32 and 64 pixels.

The residual blocks and channel plan are SNGAN's (``resnet.py``); BigGAN adds:
- a shared class embedding (``shared_dim``) and a hierarchical latent: z is split into one
  chunk for the first linear layer and one per G block; block i's batch-norms take their gains
  and biases from linear maps of [z_i, shared(y)] (``VectorBatchNorm2d``);
- one SAGAN self-attention block at side ``attention_res`` in G (after the up-block that makes
  that side) and in D (after the down-block that makes it); 0 = none. Both networks must pass
  through that side, so it is one of 14 (28 px), 8 or 16 (32 px), 8, 16 or 32 (64 px);
- orthogonal initialisation, spectral norm in G and D (as model.g/d_spectral_norm say; BigGAN
  uses both), and a projection discriminator whose class embedding is spectrally normalised;
- ``layers.orthogonal_penalty`` and ``layers.truncated_normal`` for training and sampling.

Unconditional (n_classes = 0): plain batch-norm in G and the whole of z feeds the first linear
layer (no hierarchy, since there is no class vector for the chunks to join); D has no projection.
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
    SelfAttention,
    VectorBatchNorm2d,
    check_widths,
    image_shape,
    model_classes,
    n_doublings,
    need_labels,
    projection_logits,
)
from minmax.models.registry import MODELS, ModelFamily
from minmax.models.resnet import (
    RESOLUTIONS,
    DBlock,
    GBlock,
    check_resolution,
    discriminator_widths,
    generator_widths,
    make_layer,
)

SHARED_DIM = 128  # BigGAN's shared class embedding size


def orthogonal(weight: Tensor, gain: float) -> None:
    """BigGAN's initialisation: orthogonal rows, gain 1 everywhere."""
    nn.init.orthogonal_(weight)


def attention_sides(resolution: int) -> list[int]:
    """Sides that both G (block outputs) and D (block outputs) pass through."""
    start = START_SIDES[resolution]
    return [start * 2**k for k in range(1, n_doublings(resolution))]


def check_attention(attention_res: int, resolution: int) -> None:
    sides = attention_sides(resolution)
    if attention_res and attention_res not in sides:
        choices = " or ".join(str(s) for s in sides)
        raise UsageError(
            f"model.attention_res={attention_res}: biggan at {resolution} px can attend at "
            f"{choices} (or 0 = none)"
        )


def latent_chunks(z_dim: int, n_slots: int) -> list[int]:
    """Split z_dim into n_slots sizes as equal as possible, the larger ones first."""
    base, extra = divmod(z_dim, n_slots)
    return [base + (1 if i < extra else 0) for i in range(n_slots)]


class BigGANGenerator(nn.Module):
    """x = G(z, y): (N, z_dim) [and (N,) classes] -> (N, channels, resolution, resolution)."""

    def __init__(
        self,
        z_dim: int,
        channels: int,
        resolution: int,
        width: int,
        n_classes: int = 0,
        spectral_norm: bool = True,
        attention_res: int = 0,
        shared_dim: int = SHARED_DIM,
    ) -> None:
        super().__init__()
        check_resolution("biggan", resolution)
        check_attention(attention_res, resolution)
        self.z_dim, self.n_classes = z_dim, n_classes
        self.start = START_SIDES[resolution]
        widths = generator_widths(resolution, width)
        n_blocks = len(widths) - 1
        self.start_width = widths[0]
        if n_classes:
            if z_dim < n_blocks + 1:
                raise UsageError(
                    f"conditional biggan at {resolution} px splits z into {n_blocks + 1} "
                    f"chunks: set model.z_dim >= {n_blocks + 1}, got {z_dim}"
                )
            self.chunks = latent_chunks(z_dim, n_blocks + 1)
            self.shared = nn.Embedding(n_classes, shared_dim)
            nn.init.orthogonal_(self.shared.weight)
            norms = [
                lambda c, k=k: VectorBatchNorm2d(c, k + shared_dim, spectral_norm)
                for k in self.chunks[1:]
            ]
        else:
            self.chunks = [z_dim]
            norms = [lambda c: ClassBatchNorm2d(c)] * n_blocks
        fc = nn.Linear(self.chunks[0], widths[0] * self.start**2)
        self.fc = make_layer(fc, orthogonal, 1.0, spectral_norm)
        self.blocks = nn.ModuleList(
            GBlock(widths[i], widths[i + 1], norms[i], orthogonal, spectral_norm)
            for i in range(n_blocks)
        )
        sides = [self.start * 2 ** (i + 1) for i in range(n_blocks)]
        self.attention_after = sides.index(attention_res) if attention_res else -1
        if attention_res:
            self.attention = SelfAttention(widths[self.attention_after + 1], spectral_norm)
        self.out_norm = BatchNorm2d(widths[-1])
        out = nn.Conv2d(widths[-1], channels, 3, 1, 1)
        self.out = make_layer(out, orthogonal, 1.0, spectral_norm)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.n_classes:
            need_labels(self, y)
            z_first, *z_blocks = torch.split(z, self.chunks, dim=1)
            shared = self.shared(y)
            conds = [torch.cat([chunk, shared], 1) for chunk in z_blocks]
        else:
            z_first, conds = z, [None] * len(self.blocks)
        h = self.fc(z_first).view(-1, self.start_width, self.start, self.start)
        for i, (block, cond) in enumerate(zip(self.blocks, conds, strict=True)):
            h = block(h, cond)
            if i == self.attention_after:
                h = self.attention(h)
        return torch.tanh(self.out(F.relu(self.out_norm(h), inplace=True)))


class BigGANDiscriminator(nn.Module):
    """logits = D(x, y): (N, channels, resolution, resolution) [and (N,) classes] -> (N,)."""

    def __init__(
        self,
        channels: int,
        resolution: int,
        width: int,
        n_classes: int = 0,
        spectral_norm: bool = True,
        attention_res: int = 0,
    ) -> None:
        super().__init__()
        check_resolution("biggan", resolution)
        check_attention(attention_res, resolution)
        self.n_classes = n_classes
        widths = [channels, *discriminator_widths(resolution, width)]
        self.blocks = nn.ModuleList(
            DBlock(widths[i], widths[i + 1], orthogonal, spectral_norm, first=i == 0)
            for i in range(len(widths) - 1)
        )
        sides = [resolution // 2 ** (i + 1) for i in range(len(self.blocks))]
        self.attention_after = sides.index(attention_res) if attention_res else -1
        if attention_res:
            self.attention = SelfAttention(widths[self.attention_after + 1], spectral_norm)
        self.fc = make_layer(nn.Linear(widths[-1], 1), orthogonal, 1.0, spectral_norm)
        if n_classes:
            embed = nn.Embedding(n_classes, widths[-1])
            self.embed = make_layer(embed, orthogonal, 1.0, spectral_norm)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == self.attention_after:
                h = self.attention(h)
        h = F.relu(h).sum((2, 3))
        return projection_logits(self, h, y)

    def input_blocks(self) -> list[nn.Module]:
        """The down-blocks, from the input on; the attention block belongs to the down-block
        it follows."""
        blocks = [nn.ModuleList([block]) for block in self.blocks]
        if self.attention_after >= 0:
            blocks[self.attention_after].append(self.attention)
        return blocks


def _kwargs(cfg, data_shape: tuple[int, ...], n_classes: int = 0) -> tuple[dict, dict]:
    channels, resolution = image_shape("biggan", data_shape, RESOLUTIONS)
    check_widths(cfg)
    check_attention(cfg.attention_res, resolution)
    classes = model_classes(cfg, n_classes)
    n_slots = n_doublings(resolution) + 1
    if classes and cfg.z_dim < n_slots:
        raise UsageError(
            f"conditional biggan at {resolution} px splits z into {n_slots} chunks: "
            f"set model.z_dim >= {n_slots}, got {cfg.z_dim}"
        )
    shape = {"channels": channels, "resolution": resolution}
    common = {"n_classes": classes, "attention_res": cfg.attention_res}
    g = {"z_dim": cfg.z_dim, **shape, "width": cfg.g_channels, **common}
    g.update(spectral_norm=cfg.g_spectral_norm, shared_dim=SHARED_DIM)
    d = {**shape, "width": cfg.d_channels, **common, "spectral_norm": cfg.d_spectral_norm}
    return g, d


MODELS.add("biggan", ModelFamily(BigGANGenerator, BigGANDiscriminator, _kwargs))
