"""Gradient penalties on the discriminator, as loss tensors the training loop weights and adds.

``D`` is any callable from a batch of samples to logits of shape ``(N,)`` or ``(N, 1)``.
Each penalty differentiates D with ``create_graph=True``, so calling ``backward()`` on it
reaches D's parameters. Squared norms are summed over all non-batch dimensions and averaged
over the batch. D's outputs are summed before differentiating, which gives each sample its
own gradient only when samples do not interact inside D (no batch norm).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Discriminator = Callable[[Tensor], Tensor]


def _input_gradients(D: Discriminator, x: Tensor) -> Tensor:
    """``grad_x D(x)`` per sample, with a graph back to D's parameters; ``x`` becomes a leaf."""
    x = x.detach().requires_grad_(True)
    (gradients,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return gradients.flatten(1)


def r1_penalty(D: Discriminator, x_real: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): ``E_P[||grad_x D(x)||^2]`` on real samples.

    Penalising D's slope on the data keeps the game near the equilibrium from oscillating.
    Returns the expectation alone; the loop multiplies by ``gamma / 2``.
    """
    return _input_gradients(D, x_real).pow(2).sum(dim=1).mean()


def r2_penalty(D: Discriminator, x_fake: Tensor) -> Tensor:
    """R2: ``E_Q[||grad_x D(x)||^2]`` on fake samples, detached from G first.

    The counterpart of :func:`r1_penalty`; G receives no gradient from it.
    """
    return _input_gradients(D, x_fake).pow(2).sum(dim=1).mean()


def gradient_penalty(
    D: Discriminator,
    x_real: Tensor,
    x_fake: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): ``E[(||grad_x D(x_hat)||_2 - 1)^2]``.

    ``x_hat = eps x_r + (1 - eps) x_f`` with one ``eps ~ U(0, 1)`` per sample, drawn from
    ``generator``: the optimal 1-Lipschitz critic has unit gradient norm on lines between
    paired samples of P and Q, so the penalty softly enforces the Lipschitz constraint there.
    """
    if x_real.shape != x_fake.shape:
        raise ValueError(
            f"gradient_penalty pairs real and fake samples: got {tuple(x_real.shape)} "
            f"and {tuple(x_fake.shape)}"
        )
    shape = (x_real.shape[0],) + (1,) * (x_real.ndim - 1)
    device = generator.device if generator is not None else x_real.device
    eps = torch.rand(shape, generator=generator, device=device).to(x_real)
    x_hat = eps * x_real.detach() + (1.0 - eps) * x_fake.detach()
    norms = _input_gradients(D, x_hat).norm(dim=1)
    return (norms - 1.0).pow(2).mean()
