"""MLP generator and discriminator for low-dimensional data (the toy lab).

G defaults to ReLU: its units switch fully off, so G can map whole regions of z-space to
nearly one point (tight modes) with sharp kinks between them (thin bridges). A LeakyReLU G
keeps a slope of at least 0.2 everywhere and must cancel it to make a tight mode; on the ring
that left about 20% of samples on bridges between modes, against 2-3% with ReLU.
"""

from __future__ import annotations

from torch import Tensor, nn

from minmax.errors import UsageError
from minmax.models.codes import CodePrior
from minmax.models.registry import MODELS, ModelFamily
from minmax.registry import did_you_mean

ACTIVATIONS = {"relu": lambda: nn.ReLU(), "leaky_relu": lambda: nn.LeakyReLU(0.2)}


def _mlp(in_dim: int, width: int, depth: int, out_dim: int, activation: str) -> nn.Sequential:
    if activation not in ACTIVATIONS:
        raise UsageError(
            f"unknown activation '{activation}': {did_you_mean(activation, list(ACTIVATIONS))}"
        )
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(in_dim if i == 0 else width, width), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(width if depth else in_dim, out_dim))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """x = G(z), z ~ N(0, I_z_dim); with ``codes`` > 0, z[:, 0] picks a discrete code
    (``minmax.models.codes``) and ``code_spread`` · z[:, 1:] is the continuous latent."""

    def __init__(
        self,
        z_dim: int,
        out_dim: int,
        width: int,
        depth: int,
        activation: str = "relu",
        codes: int = 0,
        code_spread: float = 1.0,
    ) -> None:
        super().__init__()
        if codes and (z_dim < 2 or depth < 1):
            raise UsageError(
                f"model.codes needs model.z_dim >= 2 (z[:, 0] picks the code) and "
                f"model.g_depth >= 1, got z_dim {z_dim}, g_depth {depth}"
            )
        self.z_dim = z_dim
        self.n_classes = 0
        self.net = _mlp(z_dim - 1 if codes else z_dim, width, depth, out_dim, activation)
        self.prior = CodePrior(codes, width, code_spread) if codes else None

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.prior is None:
            return self.net(z)
        z, code = self.prior(z)
        return self.net[1:](self.net[0](z) + code)


class MLPDiscriminator(nn.Module):
    """Returns one logit per sample: shape (N,)."""

    def __init__(self, in_dim: int, width: int, depth: int, activation: str = "leaky_relu") -> None:
        super().__init__()
        self.n_classes = 0
        self.net = _mlp(in_dim, width, depth, 1, activation)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(x.flatten(1)).squeeze(1)


def _kwargs(cfg, data_shape: tuple[int, ...], n_classes: int = 0) -> tuple[dict, dict]:
    dim = 1
    for size in data_shape:
        dim *= size
    g = {
        "z_dim": cfg.z_dim,
        "out_dim": dim,
        "width": cfg.g_width,
        "depth": cfg.g_depth,
        "activation": cfg.g_activation,
        "codes": cfg.codes,
        "code_spread": cfg.code_spread,
    }
    d = {"in_dim": dim, "width": cfg.d_width, "depth": cfg.d_depth, "activation": cfg.d_activation}
    return g, d


MODELS.add("mlp", ModelFamily(MLPGenerator, MLPDiscriminator, _kwargs))
