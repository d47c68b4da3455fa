"""MLP generator and discriminator for low-dimensional data (the toy lab).

G defaults to ReLU: its units switch fully off, so G can map whole regions of z-space to
nearly one point (tight modes) with sharp kinks between them (thin bridges). A LeakyReLU G
keeps a slope of at least 0.2 everywhere and must cancel it to make a tight mode; on the ring
that left about 20% of samples on bridges between modes, against 2-3% with ReLU.

An MLP on raw coordinates learns slowly at scales far below the data's extent (its spectral
bias): on the 25-mode grid (std 0.05 over a ±4 box) a trained D ended flat while G's modes were
visibly off, and a fresh one trained on that G's samples stayed at chance. ``fourier`` > 0 adds
a second head that also sees random Fourier features of x (Tancik et al. 2020), which told the
same samples apart at once (README: the grid). Each head is its own D (own logits, own loss):
the plain head keeps the long-range pull that moves mass between modes, which a Fourier D
alone lost.
"""

from __future__ import annotations

import math

import torch
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
        code_offsets: bool = False,
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
        offsets = out_dim if code_offsets else 0
        self.prior = CodePrior(codes, width, code_spread, offsets) if codes else None

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.prior is None:
            return self.net(z)
        code = self.prior.code_of(z)
        rest, vector = self.prior(z, code)
        x = self.net[1:](self.net[0](rest) + vector)
        if self.prior.offset is not None:
            x = x + self.prior.offset(code)
        return x

    @torch.no_grad()
    def place_codes(self, low: Tensor, high: Tensor, generator: torch.Generator) -> None:
        """Start each code at a uniform random point of the box [low, high] (per coordinate).

        Sets the codes' output offsets so that each code's centre (its continuous latent at 0)
        lands on its point; the network itself is left as initialised.
        """
        centres = self._code_centres()
        points = low + (high - low) * torch.rand(centres.shape, generator=generator)
        self.prior.offset.weight.copy_(points - centres)

    @torch.no_grad()
    def move_code(self, k: int, point: Tensor) -> None:
        """Put code ``k``'s centre on ``point`` and its logit back at the mean (0) before the
        logits are centred again (``minmax.train.revive``)."""
        prior = self.prior
        prior.offset.weight[k] = point - self._code_centres(k)
        prior.logits[k] = 0.0  # the centred logits' mean: its share restarts at about 1/K
        prior.logits -= prior.logits.mean()

    def _code_centres(self, k: int | None = None) -> Tensor:
        """Where each code's continuous latent 0 lands before its offset (or code ``k``'s)."""
        if self.prior is None or self.prior.offset is None:
            raise ValueError("placing codes needs a generator built with codes and code_offsets")
        first = self.net[0]
        vectors = self.prior.embed.weight if k is None else self.prior.embed.weight[k]
        return self.net[1:](first(first.weight.new_zeros(first.in_features)) + vectors)


class MLPDiscriminator(nn.Module):
    """One logit per sample, shape (N,); with ``fourier`` > 0, two heads, shape (N, 2).

    Head 0 is the MLP on x; head 1 an MLP of the same size on [x, sin 2πBx, cos 2πBx] with B
    (in_dim × fourier) drawn once from N(0, fourier_scale²): frequencies in cycles per unit of
    x, kept with the weights (a buffer). R1/R2 penalise the gradient of the heads' sum.
    """

    def __init__(
        self,
        in_dim: int,
        width: int,
        depth: int,
        activation: str = "leaky_relu",
        fourier: int = 0,
        fourier_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.n_classes = 0
        self.net = _mlp(in_dim, width, depth, 1, activation)
        self.fourier_net = None
        if fourier:
            self.register_buffer("frequencies", torch.randn(in_dim, fourier) * fourier_scale)
            self.fourier_net = _mlp(in_dim + 2 * fourier, width, depth, 1, activation)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        x = x.flatten(1)
        logits = self.net(x).squeeze(1)
        if self.fourier_net is None:
            return logits
        phase = (2 * math.pi) * (x @ self.frequencies)
        features = torch.cat([x, phase.sin(), phase.cos()], 1)
        return torch.stack([logits, self.fourier_net(features).squeeze(1)], 1)

    def input_blocks(self) -> list[nn.Module]:
        """Hidden layer i (linear + activation) of every head, for i from the input on; the
        heads' output layers are not blocks."""
        heads = [self.net] if self.fourier_net is None else [self.net, self.fourier_net]
        depth = (len(self.net) - 1) // 2
        return [nn.ModuleList(m for head in heads for m in head[2 * i : 2 * i + 2])
                for i in range(depth)]  # fmt: skip


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
        "code_offsets": cfg.code_init == "box",
    }
    d = {"in_dim": dim, "width": cfg.d_width, "depth": cfg.d_depth, "activation": cfg.d_activation,
         "fourier": cfg.d_fourier, "fourier_scale": cfg.d_fourier_scale}  # fmt: skip
    return g, d


MODELS.add("mlp", ModelFamily(MLPGenerator, MLPDiscriminator, _kwargs))
