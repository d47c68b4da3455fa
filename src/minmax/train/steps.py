"""One round of the game: draw a batch, ``n_dis`` D updates, one G update.

The steps own ``backward()`` and ``optimizer.step()``; objectives and regularizers only
return tensors. An ``Engine`` says which module objects a step calls and in what numerics,
so the same steps run plain on one CPU, under DDP on many ranks, compiled, or in bf16.

Every rank draws the *global* batch from the same seeded stream and keeps its own slice
(split again into ``accum_steps`` micro-batches): each rank sees different images and noise,
and a run's samples do not depend on how many processes share it. Gradients are averaged over
micro-batches and ranks, so 2 ranks × b images update the weights as 1 rank × 2b does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from minmax.config import LossConfig
from minmax.data.sources import Source
from minmax.models.layers import orthogonal_penalty
from minmax.objectives import Objective, gradient_penalty, r1_penalty, r2_penalty


@dataclass
class Batch:
    """One micro-batch: reals (and labels) for D, latents (and classes) for G."""

    real: Tensor
    y_real: Tensor | None
    z: Tensor
    y_fake: Tensor | None


@dataclass
class Engine:
    """The callables the steps use and the numerics they run in.

    ``G``/``D`` make fakes for D and judge them for G (no gradients reach their own weights
    there); ``G_train``/``D_train`` are the updated networks, DDP-wrapped when there are
    several ranks so their gradients are all-reduced; ``D_reg`` is D for steps with R1/R2/GP,
    always eager because torch.compile has no double backward. All share the same weights.
    """

    G: nn.Module
    D: nn.Module
    G_train: nn.Module
    D_train: nn.Module
    D_reg: nn.Module
    device: torch.device
    bf16: bool = False
    channels_last: bool = False

    @classmethod
    def plain(cls, G: nn.Module, D: nn.Module) -> Engine:
        """One process, eager, fp32: every role is the module itself."""
        return cls(G, D, G, D, D, torch.device("cpu"))

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def to_device(self, x: Tensor | None) -> Tensor | None:
        """Host tensor to the device: pinned and asynchronous on CUDA; NHWC if asked."""
        if x is None:
            return None
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def _identity(x: Tensor) -> Tensor:
    return x


def _sync_if(module: nn.Module, last: bool) -> contextlib.AbstractContextManager:
    """DDP all-reduces gradients only on the last micro-batch (``no_sync`` before it)."""
    inner = getattr(module, "_orig_mod", module)  # a compiled DDP wraps the DDP module
    if last or not hasattr(inner, "no_sync"):
        return contextlib.nullcontext()
    return inner.no_sync()


def d_step(
    e: Engine,
    objective: Objective,
    loss_cfg: LossConfig,
    batches: Sequence[Batch],
    opt_D: torch.optim.Optimizer,
    rng: torch.Generator,
    regularize: bool = True,
    augment: Callable[[Tensor], Tensor] | None = None,
    observe_real: Callable[[Tensor], None] | None = None,
) -> Tensor:
    """One D update on (reals, G(z)) over the micro-batches; returns the objective's mean.

    R1/R2 are lazy: added only when ``regularize`` (every ``reg_every``-th D step), weighted
    by ``reg_every`` so their average strength stays γ, and computed in fp32. With ``augment``
    (DiffAugment, ADA) D sees T(x) for reals and fakes alike, penalties included.
    ``observe_real(verdicts)``, when given, sees D's detached verdicts on this step's reals
    once, all micro-batches together (ADA's overfitting signal r_t feeds on their sign):
    D(x_r), or D(x_r) − D(x_f) of each pair under a ``relative`` objective, whose logits
    drift by any constant (under RpGAN D(x_r) > 0 for every real, overfit or not).
    """
    T = augment or _identity
    weight = loss_cfg.reg_every / 2 if regularize else 0.0
    r1, r2 = weight * loss_cfg.r1_gamma, weight * loss_cfg.r2_gamma
    penalised = r1 > 0 or r2 > 0 or objective.needs_gradient_penalty
    D = e.D_reg if penalised else e.D_train
    opt_D.zero_grad(set_to_none=True)
    losses, verdicts = [], []
    for i, b in enumerate(batches):
        with _sync_if(D, last=i == len(batches) - 1):
            with torch.no_grad(), e.autocast():
                fake = e.G(b.z, b.y_fake).float()
            with e.autocast():
                logits_real, logits_fake = D(T(b.real), b.y_real), D(T(fake), b.y_fake)
            loss = objective.d_loss(logits_real.float(), logits_fake.float())
            total = loss
            if r1 > 0:
                total = total + r1 * r1_penalty(lambda x, y=b.y_real: D(T(x), y), b.real)
            if r2 > 0:
                total = total + r2 * r2_penalty(lambda x, y=b.y_fake: D(T(x), y), fake)
            if objective.needs_gradient_penalty:
                gp = gradient_penalty(lambda x, y=b.y_real: D(T(x), y), b.real, fake, rng)
                total = total + loss_cfg.gp_weight * gp
            (total / len(batches)).backward()
        losses.append(loss.detach())
        if observe_real is not None:
            verdict = logits_real - logits_fake if objective.relative else logits_real
            verdicts.append(verdict.detach().float())
    opt_D.step()
    if observe_real is not None:
        observe_real(torch.cat(verdicts))
    return torch.stack(losses).mean()


def g_step(
    e: Engine,
    objective: Objective,
    batches: Sequence[Batch],
    opt_G: torch.optim.Optimizer,
    augment: Callable[[Tensor], Tensor] | None = None,
    ortho_reg: float = 0.0,
    observe: Callable[[Tensor, Tensor], None] | None = None,
) -> Tensor:
    """One G update against a fixed D; returns G's loss (without the ortho penalty).

    ``observe(z, logits_fake)``, when given, sees the step's latents and D's detached verdict
    on them once, all micro-batches together (G's learned code prior feeds on it), so
    ``accum_steps`` does not change how often or how far it moves.

    ``backward(inputs=...)`` accumulates gradients into G's weights only: D's stay untouched
    and nobody has to toggle ``requires_grad`` back and forth.
    """
    T = augment or _identity
    params = [p for group in opt_G.param_groups for p in group["params"]]
    opt_G.zero_grad(set_to_none=True)
    losses, verdicts = [], []
    for i, b in enumerate(batches):
        with _sync_if(e.G_train, last=i == len(batches) - 1):
            with e.autocast():
                logits_fake = e.D(T(e.G_train(b.z, b.y_fake).float()), b.y_fake)
                logits_real = None
                if objective.g_uses_real:
                    with torch.no_grad():
                        logits_real = e.D(T(b.real), b.y_real).float()
            loss = objective.g_loss(logits_real, logits_fake.float())
            if observe is not None:
                verdicts.append(logits_fake.detach().float())
            total = loss + ortho_reg * orthogonal_penalty(e.G) if ortho_reg else loss
            (total / len(batches)).backward(inputs=params)
        losses.append(loss.detach())
    opt_G.step()
    if observe is not None:
        observe(torch.cat([b.z for b in batches]), torch.cat(verdicts))
    return torch.stack(losses).mean()


@dataclass
class Slice:
    """This rank's share of a global batch of ``total``: ``parts`` micro-batches of ``size``."""

    start: int
    size: int
    parts: int

    @classmethod
    def of(cls, total: int, rank: int, world: int, accum: int) -> Slice:
        size = total // (world * accum)
        return cls(rank * accum * size, size, accum)

    def take(self, x: Tensor | None, k: int) -> Tensor | None:
        """Rows of micro-batch ``k`` (None stays None: unlabelled data, unconditional G)."""
        lo = self.start + k * self.size
        return None if x is None else x[lo : lo + self.size]


def draw(
    source: Source, n: int, z_dim: int, rng: torch.Generator, part: Slice, e: Engine
) -> list[Batch]:
    """A global batch of ``n`` from the shared stream; this rank's micro-batches of it (only
    this rank's images are gathered)."""
    mine = slice(part.start, part.start + part.size * part.parts)
    real, y_real = source.sample(n, rng, mine)
    z = torch.randn(n, z_dim, generator=rng)[mine]
    y_fake = source.sample_labels(n, rng)
    y_fake = None if y_fake is None else y_fake[mine]
    local = Slice(0, part.size, part.parts)
    return [
        Batch(*(e.to_device(local.take(v, k)) for v in (real, y_real, z, y_fake)))
        for k in range(part.parts)
    ]


def new_latents(
    batches: list[Batch], source: Source, n: int, z_dim: int, rng: torch.Generator,
    part: Slice, e: Engine,
) -> list[Batch]:  # fmt: skip
    """The same reals with fresh latents and classes (G's step after D's)."""
    z = torch.randn(n, z_dim, generator=rng)
    y_fake = source.sample_labels(n, rng)
    take = part.take
    return [
        replace(b, z=e.to_device(take(z, k)), y_fake=e.to_device(take(y_fake, k)))
        for k, b in enumerate(batches)
    ]
