"""MLP generator and discriminator for low-dimensional data (the toy lab)."""

from __future__ import annotations

from torch import Tensor, nn

from minmax.models.registry import MODELS, ModelFamily


def _mlp(in_dim: int, width: int, depth: int, out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(in_dim if i == 0 else width, width), nn.LeakyReLU(0.2)]
    layers.append(nn.Linear(width if depth else in_dim, out_dim))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """x = G(z), z ~ N(0, I_z_dim)."""

    def __init__(self, z_dim: int, out_dim: int, width: int, depth: int) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.net = _mlp(z_dim, width, depth, out_dim)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """Returns one logit per sample: shape (N,)."""

    def __init__(self, in_dim: int, width: int, depth: int) -> None:
        super().__init__()
        self.net = _mlp(in_dim, width, depth, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(1)


def _kwargs(cfg, data_shape: tuple[int, ...]) -> tuple[dict, dict]:
    dim = 1
    for size in data_shape:
        dim *= size
    g = {"z_dim": cfg.z_dim, "out_dim": dim, "width": cfg.g_width, "depth": cfg.g_depth}
    d = {"in_dim": dim, "width": cfg.d_width, "depth": cfg.d_depth}
    return g, d


MODELS.add("mlp", ModelFamily(MLPGenerator, MLPDiscriminator, _kwargs))
