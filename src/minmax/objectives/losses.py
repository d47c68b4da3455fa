"""GAN losses as pure functions of discriminator logits.

Convention: ``D`` returns logits (any real number); the probability that ``x`` is real is
``sigmoid(D(x))``. Every loss takes logit tensors of shape ``(N,)`` or ``(N, 1)`` and returns a
scalar tensor: a mean over the batch. ``P`` is the data distribution, ``Q`` the generator's.
The cross-entropy losses use ``softplus(t) = log(1 + e^t)``, so they stay finite and keep
their gradients at any logit (``-log sigmoid(t) = softplus(-t)``,
``-log(1 - sigmoid(t)) = softplus(t)``). The training loop owns ``backward()`` and the
optimizer steps; nothing here does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from minmax.registry import Registry


def flat_logits(logits: Tensor) -> Tensor:
    """Logits of shape ``(N,)``, ``(N, 1)`` or ``(N, K)`` as one flat vector.

    ``(N, K)`` comes from a D with K heads (the MLP's ``model.d_fourier``): each column is its
    own discriminator, so a loss averaged over all N·K logits is the mean of the heads' losses
    and each head learns from its own. Both sides of a loss flatten alike, so a relativistic
    pair stays (real i, fake i) of one head. Other shapes are refused: an ``(N,)`` minus
    ``(N, 1)`` difference would broadcast to ``(N, N)``.
    """
    if logits.ndim in (1, 2):
        return logits.reshape(-1)
    raise ValueError(f"expected logits of shape (N,) or (N, K), got {tuple(logits.shape)}")


def head_mean(logits: Tensor) -> Tensor:
    """One log-ratio estimate per sample: ``(N,)`` as it is, the mean of a ``(N, K)`` D's heads."""
    if logits.ndim == 2:
        return logits.mean(1)
    return flat_logits(logits)


def v_d(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """D's cross-entropy loss ``V_D = E_P[softplus(-D)] + E_Q[softplus(D)]`` (eq. 1).

    That is ``-E_P[log sigmoid(D)] - E_Q[log(1 - sigmoid(D))]``. It is minimised pointwise by
    ``D*(x) = log p(x)/q(x)``, where ``V_D(D*) = 2 log 2 - 2 JSD(P, Q)``: the better D can
    do, the further apart P and Q are in Jensen-Shannon divergence.
    """
    return (
        F.softplus(-flat_logits(logits_real)).mean() + F.softplus(flat_logits(logits_fake)).mean()
    )


def v_g(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """G's cross-entropy loss ``V_G = E_P[softplus(D)] + E_Q[softplus(-D)]`` (eq. 2).

    The labels of eq. 1 swapped: G wants its samples called real. Only the second term
    depends on G (see :func:`nonsaturating_g`). At ``D* = log p/q`` it equals
    ``2 log 2 + KL(P||Q) + KL(Q||P) - 2 JSD(P, Q)``.
    """
    return (
        F.softplus(flat_logits(logits_real)).mean() + F.softplus(-flat_logits(logits_fake)).mean()
    )


def nonsaturating_g(logits_fake: Tensor) -> Tensor:
    """The non-saturating G loss ``E_Q[softplus(-D)] = -E_Q[log sigmoid(D)]``.

    The G-dependent part of :func:`v_g`. Its gradient ``-sigmoid(-D)`` tends to -1 when D
    confidently rejects the fakes (``D -> -inf``), so G still learns early in training. With
    ``D = D*`` held fixed, its G-gradient is that of ``KL(Q||P) - 2 JSD(P, Q)`` (Arjovsky &
    Bottou 2017).
    """
    return F.softplus(-flat_logits(logits_fake)).mean()


def saturating_g(logits_fake: Tensor) -> Tensor:
    """The min-max G loss ``-E_Q[softplus(D)] = E_Q[log(1 - sigmoid(D))]`` (eq. 3).

    G maximises ``V_D``, so its loss is minus the G-dependent part of :func:`v_d`; with
    ``D = D*`` that is minimising ``JSD(P, Q)``. It saturates: ``d/dD = -sigmoid(D) -> 0``
    when D confidently rejects the fakes (``D -> -inf``), which is exactly when G needs a
    gradient.
    """
    return -F.softplus(flat_logits(logits_fake)).mean()


def hinge_d(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """D's hinge loss ``E_P[relu(1 - D)] + E_Q[relu(1 + D)]`` (Lim & Ye 2017; Miyato et al. 2018).

    Minimised pointwise by ``D* = sign(p - q)``, where it equals ``2 - 2 TV(P, Q)`` with
    ``TV = 1/2 sum |p - q|``: the hinge game measures total variation.
    """
    real = F.relu(1.0 - flat_logits(logits_real)).mean()
    return real + F.relu(1.0 + flat_logits(logits_fake)).mean()


def hinge_g(logits_fake: Tensor) -> Tensor:
    """G's hinge loss ``-E_Q[D]``: raise D's score of the fakes, without a margin."""
    return -flat_logits(logits_fake).mean()


def wasserstein_d(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """The critic's loss ``E_Q[D] - E_P[D]`` (Arjovsky et al. 2017).

    By Kantorovich-Rubinstein duality, ``W1(P, Q) = sup over 1-Lipschitz D of
    E_P[D] - E_Q[D]``, so over 1-Lipschitz critics the minimum of this loss is ``-W1(P, Q)``.
    Without a Lipschitz constraint it is unbounded below: pair it with
    :func:`minmax.objectives.gradient_penalty`. Here ``D`` is a real-valued critic score.
    """
    return flat_logits(logits_fake).mean() - flat_logits(logits_real).mean()


def wasserstein_g(logits_fake: Tensor) -> Tensor:
    """G's Wasserstein loss ``-E_Q[D]``: the G-dependent part of ``W1`` at the optimal critic."""
    return -flat_logits(logits_fake).mean()


def least_squares_d(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """D's least-squares loss ``1/2 E_P[(D - 1)^2] + 1/2 E_Q[D^2]`` (Mao et al. 2017).

    Target codes ``a = 0`` (fake) and ``b = 1`` (real); G uses ``c = 1``. The optimum is
    ``D* = p / (p + q)``, where this loss equals ``1/4 - 1/8 sum (p - q)^2 / (p + q)``
    (the triangular discrimination). Mao et al.'s Pearson chi^2 result needs
    ``b - c = 1, b - a = 2``, e.g. ``(a, b, c) = (-1, 1, 0)``; the 0/1/1 coding used here
    does not satisfy it, but is the common practical choice.
    """
    real = 0.5 * (flat_logits(logits_real) - 1.0).pow(2).mean()
    return real + 0.5 * flat_logits(logits_fake).pow(2).mean()


def least_squares_g(logits_fake: Tensor) -> Tensor:
    """G's least-squares loss ``1/2 E_Q[(D - 1)^2]``: pull D's output on fakes to the real code."""
    return 0.5 * (flat_logits(logits_fake) - 1.0).pow(2).mean()


def _paired(logits_a: Tensor | None, logits_b: Tensor | None) -> Tensor:
    """``D(a) - D(b)`` for paired samples, refusing mismatched batches instead of broadcasting."""
    if logits_a is None or logits_b is None:
        raise ValueError("relativistic losses need both real and fake logits, got None")
    a, b = flat_logits(logits_a), flat_logits(logits_b)
    if a.shape != b.shape:
        raise ValueError(
            f"relativistic losses pair samples elementwise: got {tuple(logits_a.shape)} "
            f"and {tuple(logits_b.shape)}"
        )
    return a - b


def relativistic_d(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """D's relativistic pairing loss ``E[softplus(-(D(x_r) - D(x_f)))]`` (RpGAN).

    Jolicoeur-Martineau 2019: D estimates how much more real ``x_r`` is than its paired
    ``x_f``. At the optimal D the game minimises a relativistic divergence, zero only when
    ``P = Q`` (Jolicoeur-Martineau 2020). Inputs must hold the same number of samples.
    """
    return F.softplus(-_paired(logits_real, logits_fake)).mean()


def relativistic_g(logits_real: Tensor | None, logits_fake: Tensor) -> Tensor:
    """G's relativistic pairing loss ``E[softplus(-(D(x_f) - D(x_r)))]`` (RpGAN).

    The mirror of :func:`relativistic_d`; unlike the other G losses it needs ``D(x_r)``.
    """
    return F.softplus(-_paired(logits_fake, logits_real)).mean()


@dataclass(frozen=True)
class Objective:
    """A GAN game: D's loss, G's loss, and what the training loop must add around them.

    ``g_loss(logits_real, logits_fake)`` returns only the G-dependent loss; the loop passes
    ``None`` for ``logits_real`` unless ``g_uses_real`` (it then skips D's forward on reals).
    ``relative``: the losses see only differences of logits, so a constant added to every
    logit changes nothing and D's sign alone means nothing (ADA then reads D(x_r) − D(x_f)).
    """

    name: str
    d_loss: Callable[[Tensor, Tensor], Tensor]
    g_loss: Callable[[Tensor | None, Tensor], Tensor]
    g_uses_real: bool = False
    needs_gradient_penalty: bool = False
    relative: bool = False
    description: str = ""


def _fake_only(g_loss: Callable[[Tensor], Tensor]) -> Callable[[Tensor | None, Tensor], Tensor]:
    """Adapt a G loss of ``logits_fake`` alone to the ``(logits_real, logits_fake)`` form."""

    def loss(logits_real: Tensor | None, logits_fake: Tensor) -> Tensor:
        return g_loss(logits_fake)

    loss.__name__ = g_loss.__name__
    loss.__doc__ = g_loss.__doc__
    return loss


OBJECTIVES: Registry[Objective] = Registry("objective")

for _objective in (
    Objective(
        "saturating",
        v_d,
        _fake_only(saturating_g),
        description="min-max (eq. 3): G maximises V_D = 2 log 2 - 2 JSD(P,Q) at D*; saturates",
    ),
    Objective(
        "nonsaturating",
        v_d,
        _fake_only(nonsaturating_g),
        description="eq. 2: D minimises V_D, G minimises E_Q[softplus(-D)]; JSD game, unsaturated",
    ),
    Objective(
        "hinge",
        hinge_d,
        _fake_only(hinge_g),
        description="D: E_P[relu(1-D)] + E_Q[relu(1+D)], G: -E_Q[D]; total variation at D*",
    ),
    Objective(
        "wgan-gp",
        wasserstein_d,
        _fake_only(wasserstein_g),
        needs_gradient_penalty=True,
        relative=True,
        description="D: E_Q[D] - E_P[D] + gradient penalty, G: -E_Q[D]; Wasserstein-1 distance",
    ),
    Objective(
        "lsgan",
        least_squares_d,
        _fake_only(least_squares_g),
        description="D: 1/2 E_P[(D-1)^2] + 1/2 E_Q[D^2], G: 1/2 E_Q[(D-1)^2]; least squares, 0/1/1",
    ),
    Objective(
        "rpgan",
        relativistic_d,
        relativistic_g,
        g_uses_real=True,
        relative=True,
        description="D: E[softplus(D(x_f) - D(x_r))], G: mirror; relativistic pairing divergence",
    ),
):
    OBJECTIVES.add(_objective.name, _objective)
del _objective


def get_objective(name: str) -> Objective:
    """The registered objective called ``name``; a :class:`UsageError` suggests close names."""
    return OBJECTIVES.get(name)
