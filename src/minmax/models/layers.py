"""Pieces the image families share: spectral norm, conditional batch-norm, self-attention,
shape checks, and two BigGAN tools (the orthogonal penalty and truncated latents).

Spectral norm is the parametrization-based one (``torch.nn.utils.parametrizations``): the
state_dict holds ``parametrizations.weight.original`` and the power-iteration vectors ``_u``,
``_v`` as plain tensors, so a module rebuilt from its kwargs loads it exactly. In train mode
each forward does one power iteration; in eval mode σ comes from the stored vectors.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from minmax.errors import UsageError

# image side -> side of G's first feature map; each block doubles it
START_SIDES = {28: 7, 32: 4, 64: 4}


# --- building helpers -----------------------------------------------------------------------


def maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    """W / σ(W) (Miyato et al. 2018) when ``enabled``; call after initialising the weight."""
    return spectral_norm(module) if enabled else module


def n_doublings(resolution: int) -> int:
    """How many ×2 steps take G's first map (``START_SIDES``) to ``resolution``."""
    return int(math.log2(resolution // START_SIDES[resolution]))


def image_shape(arch: str, data_shape: tuple[int, ...], resolutions: list[int]) -> tuple[int, int]:
    """(channels, side) of square image data, or a UsageError naming what ``arch`` supports."""
    sizes = ", ".join(str(r) for r in resolutions)
    if len(data_shape) != 3:
        raise UsageError(
            f"arch={arch} needs image data (C, H, W), got shape {tuple(data_shape)}: "
            "use arch=mlp for vector data"
        )
    channels, height, width = data_shape
    if height != width or height not in resolutions:
        raise UsageError(
            f"arch={arch} supports square images of {sizes} pixels, got {height}x{width}: "
            "set data.resolution to one of them"
        )
    if channels < 1:
        raise UsageError(f"arch={arch} needs at least one image channel, got {channels}")
    return channels, height


def model_classes(cfg, n_classes: int) -> int:
    """Classes the networks condition on: the dataset's when model.conditional, else 0."""
    if not cfg.conditional:
        return 0
    if n_classes <= 0:
        raise UsageError("model.conditional=true needs labelled data: set model.conditional=false")
    return n_classes


def check_widths(cfg) -> None:
    if cfg.g_channels < 1 or cfg.d_channels < 1 or cfg.z_dim < 1:
        raise UsageError(
            "model.g_channels, model.d_channels and model.z_dim must be positive, got "
            f"{cfg.g_channels}, {cfg.d_channels}, {cfg.z_dim}"
        )


def need_labels(module: nn.Module, y: Tensor | None) -> None:
    if y is None:
        name = type(module).__name__
        raise ValueError(f"{name} is class-conditional ({module.n_classes} classes): pass y")


# --- normalisation --------------------------------------------------------------------------


class BatchNorm2d(nn.BatchNorm2d):
    """Batch-norm whose training statistics span every rank's batch under DDP.

    With it, 2 ranks × b images normalise exactly as 1 rank × 2b, so the model does not
    depend on how many processes train it. torch's SyncBatchNorm is GPU-only and would
    replace the conditional subclasses below with a plain layer. ``sync`` is the
    ``train.sync_bn`` switch (off: per-rank statistics, as in plain DDP, and faster: see
    docs/scaling.md); eval mode uses the running statistics either way.
    """

    sync: bool = False  # set from train.sync_bn by the loop

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.sync and dist.is_initialized() and dist.get_world_size() > 1:
            return _synced_batch_norm(self, x)
        return super().forward(x)


def _synced_batch_norm(bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    """Mean and variance over all ranks from one differentiable all-reduce of Σx and Σx²
    (summed in float64, where E[x²] − E[x]² loses nothing that matters); its backward sums the
    statistics' gradients across ranks as the single-process graph would. One collective
    per layer, not two: on CPU each costs a round trip that both ranks wait for."""
    from torch.distributed.nn.functional import all_reduce

    dims = [0, 2, 3]
    x32 = x.float()
    count = x.numel() // x.shape[1] * dist.get_world_size()  # equal batches on every rank
    moments = [x32.sum(dims, dtype=torch.float64), x32.square().sum(dims, dtype=torch.float64)]
    mean, var = (all_reduce(torch.cat(moments)) / count).chunk(2)
    var = (var - mean.square()).clamp_min(0)
    scale = torch.rsqrt(var + bn.eps).float()
    out = ((x32 - mean.float()[None, :, None, None]) * scale[None, :, None, None]).to(x.dtype)
    if bn.affine:
        out = out * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]
    if bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked += 1
            m = bn.momentum if bn.momentum is not None else 1 / float(bn.num_batches_tracked)
            bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), m)
            unbiased = var * count / max(count - 1, 1)
            bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), m)
    return out


class ClassBatchNorm2d(BatchNorm2d):
    """Batch-norm with a gain and bias per class (de Vries et al. 2017; SNGAN's G):
    out = γ_y · (x − μ)/σ + β_y, with γ initialised to 1 and β to 0.

    ``n_classes == 0`` is ordinary batch-norm with one learned (γ, β); ``y`` is then ignored.
    """

    def __init__(self, channels: int, n_classes: int = 0) -> None:
        super().__init__(channels, affine=n_classes == 0)
        self.n_classes = n_classes
        if n_classes:
            self.class_gain = nn.Embedding(n_classes, channels)
            self.class_bias = nn.Embedding(n_classes, channels)
            nn.init.ones_(self.class_gain.weight)
            nn.init.zeros_(self.class_bias.weight)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = super().forward(x)
        if not self.n_classes:
            return h
        gain = self.class_gain(y)[:, :, None, None]
        bias = self.class_bias(y)[:, :, None, None]
        return torch.addcmul(bias, h, gain)


class VectorBatchNorm2d(BatchNorm2d):
    """BigGAN's conditional batch-norm: out = (1 + W_γ c) · (x − μ)/σ + W_β c, where the
    vector c is this block's latent chunk concatenated with the shared class embedding.
    The linear maps are spectrally normalised when G is (as in BigGAN)."""

    def __init__(self, channels: int, cond_dim: int, spectral_norm: bool = False) -> None:
        super().__init__(channels, affine=False)
        gain, bias = nn.Linear(cond_dim, channels), nn.Linear(cond_dim, channels)
        for layer in (gain, bias):
            nn.init.orthogonal_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.gain = maybe_sn(gain, spectral_norm)
        self.bias_map = maybe_sn(bias, spectral_norm)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = super().forward(x)
        gain = 1 + self.gain(cond)[:, :, None, None]
        return torch.addcmul(self.bias_map(cond)[:, :, None, None], h, gain)


# --- attention ------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """SAGAN's self-attention (Zhang et al. 2018): x + γ · o, with γ learned from 0.

    o_i = Σ_j softmax_j(f(x)_i · g(x)_j) h(x)_j; f and g are 1×1 convs to max(C/8, 1)
    channels (query, key), h a 1×1 conv to C channels (value), no scaling. As in BigGAN, keys
    and values are 2×2 max-pooled, so each of the L positions attends over ~L/4 (4× less
    work: attention was ~35% of mnist-biggan's step on CPU). Plain matmul + softmax (not fused
    attention) so R1's double backward works on CPU.
    """

    def __init__(self, channels: int, spectral_norm: bool = False) -> None:
        super().__init__()
        inner = max(channels // 8, 1)
        convs = []
        for out in (inner, inner, channels):
            conv = nn.Conv2d(channels, out, 1, bias=False)
            nn.init.orthogonal_(conv.weight)
            convs.append(maybe_sn(conv, spectral_norm))
        self.f, self.g, self.h = convs
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        n, c, height, width = x.shape
        query = self.f(x).flatten(2)  # (N, C/8, L)
        key = _pool(self.g(x)).flatten(2)  # (N, C/8, L/4)
        value = _pool(self.h(x)).flatten(2)  # (N, C, L/4)
        attention = torch.softmax(query.transpose(1, 2) @ key, dim=-1)  # (N, L, L/4)
        out = value @ attention.transpose(1, 2)  # (N, C, L)
        return x + self.gamma * out.view(n, c, height, width)


def _pool(x: Tensor) -> Tensor:
    """2×2 max-pool; an odd side keeps its last row/column (ceil), a side of 1 stays."""
    return F.max_pool2d(x, 2, ceil_mode=True) if min(x.shape[-2:]) > 1 else x


# --- BigGAN tools ---------------------------------------------------------------------------


def _off_diagonal_square_sum(W: Tensor) -> Tensor:
    """‖W Wᵀ ⊙ (1 − I)‖_F² for W of shape (out, in), through the smaller Gram matrix."""
    out_features, in_features = W.shape
    if out_features <= in_features:
        gram = W @ W.T
        mask = 1 - torch.eye(out_features, dtype=W.dtype, device=W.device)
        return (gram * mask).square().sum()
    # ‖W Wᵀ‖_F² = ‖Wᵀ W‖_F², and the diagonal of W Wᵀ holds the squared row norms.
    return (W.T @ W).square().sum() - W.square().sum(1).square().sum()


def orthogonal_penalty(module: nn.Module) -> Tensor:
    """BigGAN's orthogonal regularisation (Brock et al. 2019, eq. 3): Σ_W ‖W Wᵀ ⊙ (1 − I)‖_F².

    W runs over every weight with ≥ 2 dimensions, flattened to (out, -1) (ConvTranspose
    weights are (in, out, ...) and are transposed first); embeddings, biases and 1-D params
    (batch-norm, γ of attention) are left out. Spectrally normalised layers contribute their
    original weight, not W/σ. The loss weight (BigGAN: β = 1e-4) is the caller's; note that
    BigGAN's code adds the gradient 2(W Wᵀ ⊙ (1 − I))W, which is that of *half* this sum.
    """
    total = None
    for m in module.modules():
        if isinstance(m, (nn.Embedding, parametrize.ParametrizationList)):
            continue
        weights = [p for p in m.parameters(recurse=False)]
        if parametrize.is_parametrized(m):
            weights += [plist.original for plist in m.parametrizations.values()]
        for W in weights:
            if W.ndim < 2:
                continue
            if isinstance(m, nn.modules.conv._ConvTransposeNd):
                W = W.transpose(0, 1)
            term = _off_diagonal_square_sum(W.flatten(1))
            total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total


def truncated_normal(
    n: int, z_dim: int, threshold: float | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """z ~ N(0, I) of shape (n, z_dim) with every entry |z| > threshold redrawn until none is
    (BigGAN's truncation trick: fidelity up, variety down). threshold None or 0: plain normal.
    Drawn on the generator's device."""
    device = generator.device if generator is not None else None
    z = torch.randn(n, z_dim, generator=generator, device=device)
    if not threshold:
        return z
    if threshold < 0:
        raise UsageError(f"truncation threshold must be positive (or 0 = off), got {threshold}")
    while True:
        outside = z.abs() > threshold
        count = int(outside.sum())
        if count == 0:
            return z
        z[outside] = torch.randn(count, generator=generator, device=device)


def upsample(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def projection_logits(D: nn.Module, h: Tensor, y: Tensor | None) -> Tensor:
    """The projection head (Miyato & Koyama 2018): fc(h) + ⟨embed(y), h⟩ for conditional D."""
    logits = D.fc(h).squeeze(1)
    if D.n_classes:
        need_labels(D, y)
        logits = logits + (D.embed(y) * h).sum(1)
    return logits


def plain_kwargs(
    arch: str, cfg, data_shape: tuple[int, ...], n_classes: int, resolutions: list[int]
) -> tuple[dict, dict]:
    """G and D kwargs of a family with no attention block (dcgan, resnet)."""
    channels, resolution = image_shape(arch, data_shape, resolutions)
    check_widths(cfg)
    if cfg.attention_res:
        raise UsageError(
            f"model.attention_res={cfg.attention_res} is for arch=biggan: "
            f"{arch} has no attention block, set model.attention_res=0"
        )
    classes = model_classes(cfg, n_classes)
    shape = {"channels": channels, "resolution": resolution}
    g = {"z_dim": cfg.z_dim, **shape, "width": cfg.g_channels, "n_classes": classes}
    d = {**shape, "width": cfg.d_channels, "n_classes": classes}
    g["spectral_norm"] = cfg.g_spectral_norm
    d["spectral_norm"] = cfg.d_spectral_norm
    return g, d
