"""Gradient penalties on discriminators whose input gradients are known in closed form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from minmax.objectives import gradient_penalty, r1_penalty, r2_penalty

W = torch.tensor([0.5, -2.0, 1.5], dtype=torch.float64)


def linear_D(x: torch.Tensor) -> torch.Tensor:
    """D(x) = x @ w: grad_x D = w everywhere."""
    return x @ W


def quadratic_D(x: torch.Tensor) -> torch.Tensor:
    """D(x) = sum x^2 over non-batch dims: grad_x D = 2x."""
    return x.pow(2).flatten(1).sum(dim=1)


def samples(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("penalty", [r1_penalty, r2_penalty])
def test_linear_d_penalty_is_squared_weight_norm(penalty) -> None:
    value = penalty(linear_D, samples(0, 6, 3))
    assert value.shape == ()
    assert value.item() == pytest.approx(W.pow(2).sum().item(), rel=1e-12)


@pytest.mark.parametrize("penalty", [r1_penalty, r2_penalty])
def test_quadratic_d_penalty_sums_over_all_non_batch_dims(penalty) -> None:
    x = samples(1, 4, 2, 3, 3)
    expected = (2 * x).pow(2).flatten(1).sum(dim=1).mean()
    assert penalty(quadratic_D, x).item() == pytest.approx(expected.item(), rel=1e-12)


def test_column_logits_give_the_same_penalty() -> None:
    x = samples(2, 5, 3)
    column = r1_penalty(lambda v: linear_D(v).unsqueeze(1), x)
    assert column.item() == pytest.approx(r1_penalty(linear_D, x).item(), rel=1e-12)


def test_r1_gradient_reaches_d_parameters() -> None:
    # R1 of D(x) = x @ w + b is ||w||^2, so d R1 / d w = 2w; b does not enter it.
    D = nn.Linear(3, 1).double()
    r1_penalty(D, samples(3, 8, 3)).backward()
    torch.testing.assert_close(D.weight.grad, 2 * D.weight.detach())
    assert D.bias.grad is None


def test_r2_gives_no_gradient_to_the_generator() -> None:
    G, D = nn.Linear(2, 3).double(), nn.Linear(3, 1).double()
    x_fake = G(samples(4, 8, 2))
    r2_penalty(D, x_fake).backward()
    assert G.weight.grad is None
    assert D.weight.grad is not None


def test_penalties_leave_the_inputs_untouched() -> None:
    x = samples(5, 4, 3)
    r1_penalty(linear_D, x)
    gradient_penalty(linear_D, x, x + 1.0)
    assert not x.requires_grad and x.grad is None


def test_gradient_penalty_of_linear_d_is_squared_norm_gap() -> None:
    value = gradient_penalty(linear_D, samples(6, 7, 3), samples(7, 7, 3))
    assert value.shape == ()
    assert value.item() == pytest.approx((W.norm().item() - 1.0) ** 2, rel=1e-12)


def test_gradient_penalty_interpolates_with_one_eps_per_sample() -> None:
    # Quadratic D has gradient 2 x_hat, so the penalty reveals where x_hat lies.
    x_real, x_fake = samples(8, 5, 2, 3), samples(9, 5, 2, 3)
    eps = torch.rand(5, generator=torch.Generator().manual_seed(11)).double()
    x_hat = eps.view(5, 1, 1) * x_real + (1 - eps.view(5, 1, 1)) * x_fake
    expected = ((2 * x_hat).flatten(1).norm(dim=1) - 1).pow(2).mean()
    got = gradient_penalty(quadratic_D, x_real, x_fake, torch.Generator().manual_seed(11))
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def test_gradient_penalty_is_deterministic_given_the_generator() -> None:
    x_real, x_fake = samples(10, 6, 3), samples(11, 6, 3)

    def penalty(seed: int) -> float:
        generator = torch.Generator().manual_seed(seed)
        return gradient_penalty(quadratic_D, x_real, x_fake, generator).item()

    assert penalty(0) == penalty(0)
    assert penalty(0) != penalty(1)


def test_gradient_penalty_gradient_reaches_d_parameters() -> None:
    # GP of D(x) = x @ w + b is (||w|| - 1)^2, with gradient 2 (||w|| - 1) w / ||w||.
    D = nn.Linear(3, 1).double()
    gradient_penalty(D, samples(12, 8, 3), samples(13, 8, 3)).backward()
    w = D.weight.detach()
    torch.testing.assert_close(D.weight.grad, 2 * (w.norm() - 1) * w / w.norm())


def test_gradient_penalty_is_finite_where_d_is_flat() -> None:
    # ||grad|| = 0 is where the norm is not differentiable; the penalty must not turn NaN.
    D = nn.Linear(3, 1).double()
    nn.init.zeros_(D.weight)
    value = gradient_penalty(D, samples(14, 4, 3), samples(15, 4, 3))
    value.backward()
    assert value.item() == pytest.approx(1.0)
    assert torch.all(torch.isfinite(D.weight.grad))


def test_gradient_penalty_refuses_unpaired_batches() -> None:
    with pytest.raises(ValueError, match="pairs"):
        gradient_penalty(linear_D, samples(16, 4, 3), samples(17, 5, 3))
