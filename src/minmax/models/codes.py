"""A discrete latent code with a learned prior: G for data made of separate pieces.

A continuous G fed a connected latent (a Gaussian) makes a connected set of samples, so between
separate modes it must leave bridges of samples that land nowhere (Khayatkhoei et al. 2018;
Tanielian et al. 2020). Here z's first coordinate picks one of K codes (its normal CDF, cut into
K bins), each code adds its own learned vector to G's first hidden layer, and the codes of
different modes need nothing between them. z stays N(0, I), so every sampler works unchanged.

How often each code is drawn (its share π_k, the bin widths) is learned from D's verdicts. At
the optimum D*(x) = log P(x)/Q(x): a code whose samples D scores below zero on average puts more
mass where it sits than P has there, one scored above zero less. After each G step every
code's logit moves by ``rate`` × the mean logit D gave its samples (a multiplicative-weights
step on π), which stops when all codes' samples score alike. Without it the shares stay at 1/K
and each mode keeps whatever number of codes it caught early on: uneven mode weights.

The code vectors start large (std 4), so each code begins with its own pattern of active units
and can settle in its own mode; drawn small, the codes never specialise and the bridges stay.
Large vectors also make G's output move further per Adam step: with the toy lab's lr_g of 1e-3
G hopped around faster than D could follow (D at chance, G collapsed); the ring preset halves it.

``spread`` scales the continuous part before G sees it. Below 1, each code starts as a tight
blob that lands in one mode as a whole; at 1 on the 25-mode grid, codes' blobs started wide,
some straddled two modes and stayed split, and streaks between modes remained.

``out_dim`` > 0 gives each code a learned offset added to G's output. Untrained, G puts every
code near one point (its first output), and the codes must travel to the modes; an offset lets
each code start elsewhere, e.g. spread over the data's bounding box (``model.code_init: box``),
and lets a starved code be moved to where D finds the data least covered (``minmax.train.revive``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from minmax.objectives.losses import head_mean

LOGIT_BOUND = 8.0  # shares stay within e^±16 of each other: a starved code can come back


class CodePrior(nn.Module):
    """K codes drawn with learned shares; each code's vector is added to a hidden layer."""

    def __init__(self, codes: int, width: int, spread: float = 1.0, out_dim: int = 0) -> None:
        super().__init__()
        if codes < 2:
            raise ValueError(f"a code prior needs at least 2 codes, got {codes}")
        if not spread > 0:
            raise ValueError(f"the continuous latent's spread must be positive, got {spread}")
        self.codes, self.spread = codes, spread
        self.embed = nn.Embedding(codes, width)
        # wide apart from the start: each code claims its own region before G smooths them over
        nn.init.normal_(self.embed.weight, std=4.0)
        self.register_buffer("logits", torch.zeros(codes))
        self.offset = nn.Embedding(codes, out_dim) if out_dim else None
        if self.offset is not None:
            nn.init.zeros_(self.offset.weight)

    def shares(self) -> Tensor:
        """π: how often each code is drawn, shape (K,), summing to 1."""
        return torch.softmax(self.logits, 0)

    def code_of(self, z: Tensor) -> Tensor:
        """The code each latent picks: the bin of Φ(z[:, 0]) under the cumulative shares.

        The bin is the count of edges below u, which is what ``torch.searchsorted`` returns
        for sorted edges; ONNX has no searchsorted, and K is small (``minmax export --onnx``)."""
        edges = self.shares().cumsum(0)
        u = torch.special.ndtr(z[:, 0].float())
        return (edges < u[:, None]).sum(1).clamp_(max=self.codes - 1)

    def forward(self, z: Tensor, code: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Split z into its continuous part spread · z[:, 1:] and its code's vector (N, width).

        ``code``: ``code_of(z)`` when the caller already has it (it also looks up the offset).
        """
        code = self.code_of(z) if code is None else code
        return z[:, 1:] * self.spread, self.embed(code)

    @torch.no_grad()
    def observe(self, z: Tensor, logits_fake: Tensor, rate: float) -> None:
        """One multiplicative-weights step: logit_k += rate · mean D over code k's samples.

        Sums are all-reduced under torch.distributed, so every rank keeps the same shares.
        """
        c = self.code_of(z)
        logits_fake = head_mean(logits_fake)
        stats = torch.zeros(2, self.codes, device=self.logits.device)
        stats[0].index_add_(0, c, logits_fake.float())
        stats[1].index_add_(0, c, torch.ones_like(logits_fake, dtype=torch.float32))
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
        mean = stats[0] / stats[1].clamp(min=1)  # 0 for codes not drawn: no move
        self.logits += rate * mean
        self.logits -= self.logits.mean()
        self.logits.clamp_(-LOGIT_BOUND, LOGIT_BOUND)


def code_prior(G: nn.Module) -> CodePrior | None:
    """G's code prior, or None when G has no discrete latent."""
    prior = getattr(G, "prior", None)
    return prior if isinstance(prior, CodePrior) else None
