"""Losses against hand-computed values, naive formulas, extreme logits and the theory at D*."""

from __future__ import annotations

import math

import pytest
import torch

from minmax.errors import UsageError
from minmax.objectives import (
    OBJECTIVES,
    get_objective,
    head_mean,
    hinge_d,
    hinge_g,
    least_squares_d,
    least_squares_g,
    nonsaturating_g,
    relativistic_d,
    relativistic_g,
    saturating_g,
    v_d,
    v_g,
    wasserstein_d,
    wasserstein_g,
)

LOG2 = math.log(2.0)


def sp(t: float) -> float:
    """softplus by hand, for moderate t."""
    return math.log(1.0 + math.exp(t))


def naive_sp(t: torch.Tensor) -> torch.Tensor:
    """log(1 + e^t) written out: the unstable formula the losses must agree with."""
    return torch.log(1.0 + torch.exp(t))


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# Every loss as f(logits_real, logits_fake), so the generic tests below cover them all.
TWO_ARG = {
    "v_d": v_d,
    "v_g": v_g,
    "nonsaturating_g": lambda r, f: nonsaturating_g(f),
    "saturating_g": lambda r, f: saturating_g(f),
    "hinge_d": hinge_d,
    "hinge_g": lambda r, f: hinge_g(f),
    "wasserstein_d": wasserstein_d,
    "wasserstein_g": lambda r, f: wasserstein_g(f),
    "least_squares_d": least_squares_d,
    "least_squares_g": lambda r, f: least_squares_g(f),
    "relativistic_d": relativistic_d,
    "relativistic_g": relativistic_g,
}


# Hand-computed values.


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("v_d", 2 * LOG2),
        ("v_g", 2 * LOG2),
        ("nonsaturating_g", LOG2),
        ("saturating_g", -LOG2),
        ("hinge_d", 2.0),
        ("hinge_g", 0.0),
        ("wasserstein_d", 0.0),
        ("wasserstein_g", 0.0),
        ("least_squares_d", 0.5),
        ("least_squares_g", 0.5),
        ("relativistic_d", LOG2),
        ("relativistic_g", LOG2),
    ],
)
def test_zero_logits(name: str, expected: float) -> None:
    zeros = torch.zeros(5)
    assert TWO_ARG[name](zeros, zeros).item() == pytest.approx(expected, rel=1e-6, abs=1e-7)


REAL = (1.0, -2.0, 0.5)
FAKE = (0.25, 3.0, -1.5)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("v_d", sum(sp(-r) for r in REAL) / 3 + sum(sp(f) for f in FAKE) / 3),
        ("v_g", sum(sp(r) for r in REAL) / 3 + sum(sp(-f) for f in FAKE) / 3),
        ("nonsaturating_g", sum(sp(-f) for f in FAKE) / 3),
        ("saturating_g", -sum(sp(f) for f in FAKE) / 3),
        # relu(1 - r) = 0, 3, 0.5; relu(1 + f) = 1.25, 4, 0.
        ("hinge_d", (0 + 3 + 0.5) / 3 + (1.25 + 4 + 0) / 3),
        ("hinge_g", -(0.25 + 3.0 - 1.5) / 3),
        ("wasserstein_d", (0.25 + 3.0 - 1.5) / 3 - (1.0 - 2.0 + 0.5) / 3),
        ("wasserstein_g", -(0.25 + 3.0 - 1.5) / 3),
        # (r - 1)^2 = 0, 9, 0.25; f^2 = 0.0625, 9, 2.25; (f - 1)^2 = 0.5625, 4, 6.25.
        ("least_squares_d", 0.5 * (0 + 9 + 0.25) / 3 + 0.5 * (0.0625 + 9 + 2.25) / 3),
        ("least_squares_g", 0.5 * (0.5625 + 4 + 6.25) / 3),
        ("relativistic_d", sum(sp(-(r - f)) for r, f in zip(REAL, FAKE, strict=True)) / 3),
        ("relativistic_g", sum(sp(-(f - r)) for r, f in zip(REAL, FAKE, strict=True)) / 3),
    ],
)
def test_hand_computed_values(name: str, expected: float) -> None:
    assert TWO_ARG[name](t(*REAL), t(*FAKE)).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", sorted(TWO_ARG))
def test_column_logits_match_flat_logits(name: str) -> None:
    real, fake = t(*REAL), t(*FAKE)
    flat = TWO_ARG[name](real, fake)
    column = TWO_ARG[name](real.unsqueeze(1), fake.unsqueeze(1))
    assert column.shape == ()
    assert column.item() == pytest.approx(flat.item(), rel=1e-12)


@pytest.mark.parametrize("name", sorted(TWO_ARG))
def test_head_columns_each_count_as_their_own_discriminator(name: str) -> None:
    """(N, K) logits from a K-headed D: the loss is the mean of the K heads' own losses."""
    real = torch.stack([t(*REAL), t(0.4, -1.0, 2.0)], 1)
    fake = torch.stack([t(*FAKE), t(-0.2, 1.5, 0.0)], 1)
    per_head = [TWO_ARG[name](real[:, k], fake[:, k]).item() for k in range(2)]
    assert TWO_ARG[name](real, fake).item() == pytest.approx(sum(per_head) / 2, rel=1e-12)


@pytest.mark.parametrize("name", sorted(TWO_ARG))
def test_other_shapes_are_refused(name: str) -> None:
    cube = torch.zeros(3, 2, 1)
    with pytest.raises(ValueError, match=r"\(N,\) or \(N, K\)"):
        TWO_ARG[name](cube, cube)


def test_head_mean_is_one_log_ratio_per_sample() -> None:
    assert torch.equal(head_mean(t(1.0, -2.0)), t(1.0, -2.0))
    assert torch.equal(head_mean(t(1.0, -2.0).unsqueeze(1)), t(1.0, -2.0))
    torch.testing.assert_close(head_mean(torch.stack([t(1.0, 0.0), t(3.0, -1.0)], 1)), t(2.0, -0.5))


def test_relativistic_losses_refuse_unpaired_batches() -> None:
    with pytest.raises(ValueError, match="pair"):
        relativistic_d(torch.zeros(4), torch.zeros(3))
    with pytest.raises(ValueError, match="pair"):
        relativistic_g(torch.zeros(4, 1), torch.zeros(5, 1))


def test_relativistic_pairs_column_with_flat_logits_without_broadcasting() -> None:
    # (N,) - (N, 1) would broadcast to (N, N); the flattened pairing must not.
    real, fake = t(*REAL), t(*FAKE)
    expected = relativistic_d(real, fake).item()
    assert relativistic_d(real, fake.unsqueeze(1)).item() == pytest.approx(expected, rel=1e-12)


# Gradients against the naive formulas.

NAIVE = {
    "v_d": lambda r, f: naive_sp(-r).mean() + naive_sp(f).mean(),
    "v_g": lambda r, f: naive_sp(r).mean() + naive_sp(-f).mean(),
    "nonsaturating_g": lambda r, f: naive_sp(-f).mean(),
    "saturating_g": lambda r, f: -naive_sp(f).mean(),
    "relativistic_d": lambda r, f: naive_sp(f - r).mean(),
    "relativistic_g": lambda r, f: naive_sp(r - f).mean(),
    "hinge_d": lambda r, f: torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean(),
    "least_squares_d": lambda r, f: ((r - 1) ** 2).mean() / 2 + (f**2).mean() / 2,
}


@pytest.mark.parametrize("name", sorted(NAIVE))
def test_gradients_match_naive_formula(name: str) -> None:
    real = t(2.5, -0.7, 0.3, -4.0).requires_grad_(True)
    fake = t(-1.2, 0.9, 3.5, -0.1).requires_grad_(True)
    ours = torch.autograd.grad(TWO_ARG[name](real, fake), (real, fake), allow_unused=True)
    naive = torch.autograd.grad(NAIVE[name](real, fake), (real, fake), allow_unused=True)
    for got, want in zip(ours, naive, strict=True):
        if want is None:
            assert got is None or torch.all(got == 0)
        else:
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


# Extreme logits.


@pytest.mark.parametrize("name", sorted(TWO_ARG))
@pytest.mark.parametrize("scale", [100.0, 1e4])
def test_extreme_logits_give_finite_values_and_gradients(name: str, scale: float) -> None:
    real = torch.tensor([scale, -scale, scale, -scale], requires_grad=True)
    fake = torch.tensor([-scale, -scale, scale, scale], requires_grad=True)
    loss = TWO_ARG[name](real, fake)
    assert torch.isfinite(loss)
    for grad in torch.autograd.grad(loss, (real, fake), allow_unused=True):
        assert grad is None or torch.all(torch.isfinite(grad))


def test_softplus_losses_stay_exact_where_the_naive_formula_overflows() -> None:
    logits = torch.full((3,), -1e4)
    assert torch.isinf(naive_sp(-logits)).all()  # the test would be vacuous otherwise
    assert nonsaturating_g(logits).item() == pytest.approx(1e4)
    assert v_d(logits, -logits).item() == pytest.approx(2e4)
    assert saturating_g(logits).item() == pytest.approx(0.0, abs=1e-30)


@pytest.mark.parametrize("scale", [100.0, 1e4])
def test_saturating_g_saturates_and_nonsaturating_g_does_not(scale: float) -> None:
    n = 4
    fake = torch.full((n,), -scale, requires_grad=True)
    (saturating,) = torch.autograd.grad(saturating_g(fake), fake)
    (nonsaturating,) = torch.autograd.grad(nonsaturating_g(fake), fake)
    # d/dD of -softplus(D) is -sigmoid(D) ~ -e^-100; of softplus(-D) it is -sigmoid(-D) ~ -1.
    assert torch.all(saturating.abs() < 1e-40)
    torch.testing.assert_close(nonsaturating, torch.full((n,), -1.0 / n))


# The theory at the optimal discriminator, on two distributions over three points.

P = (0.5, 0.3, 0.2)
Q = (0.1, 0.3, 0.6)
M = tuple((p + q) / 2 for p, q in zip(P, Q, strict=True))
LOG_RATIO = [math.log(p / q) for p, q in zip(P, Q, strict=True)]  # D* = log p/q for V_D
COUNTS = 10  # P and Q are multiples of 1/10, so batch means are exact expectations


def kl(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True) if x > 0)


def batch(weights: tuple[float, ...], values: list[float]) -> torch.Tensor:
    """A batch whose mean of any f(values) is the expectation of f under ``weights``."""
    repeats = [round(w * COUNTS) for w in weights]
    assert sum(repeats) == COUNTS
    return torch.tensor(
        [v for v, k in zip(values, repeats, strict=True) for _ in range(k)], dtype=torch.float64
    )


def optimal_logits(d_star: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch(P, d_star), batch(Q, d_star)


def test_v_d_at_optimal_d_is_2log2_minus_2jsd() -> None:
    jsd = 0.5 * kl(P, M) + 0.5 * kl(Q, M)
    real, fake = optimal_logits(LOG_RATIO)
    assert v_d(real, fake).item() == pytest.approx(2 * LOG2 - 2 * jsd, rel=1e-12)


def test_v_d_is_minimised_by_log_p_over_q() -> None:
    d_star = torch.tensor(LOG_RATIO, dtype=torch.float64)
    best = v_d(*optimal_logits(d_star.tolist())).item()
    for shift in ([0.1, 0, 0], [0, -0.2, 0], [0, 0, 0.05], [-0.3, 0.3, 0.3]):
        moved = (d_star + torch.tensor(shift, dtype=torch.float64)).tolist()
        assert v_d(*optimal_logits(moved)).item() > best


def test_v_g_at_optimal_d_is_jeffreys_minus_2jsd() -> None:
    jsd = 0.5 * kl(P, M) + 0.5 * kl(Q, M)
    real, fake = optimal_logits(LOG_RATIO)
    expected = 2 * LOG2 + kl(P, Q) + kl(Q, P) - 2 * jsd
    assert v_g(real, fake).item() == pytest.approx(expected, rel=1e-12)


def test_hinge_d_at_optimal_d_is_2_minus_2tv() -> None:
    # Sign(p - q) with D = 0 where p = q (any value in [-1, 1] is optimal there).
    tv = 0.5 * sum(abs(p - q) for p, q in zip(P, Q, strict=True))
    real, fake = optimal_logits(
        [math.copysign(1.0, p - q) if p != q else 0.0 for p, q in zip(P, Q, strict=True)]
    )
    assert hinge_d(real, fake).item() == pytest.approx(2 - 2 * tv, rel=1e-12)


def test_least_squares_d_at_optimal_d_is_triangular_discrimination() -> None:
    triangular = sum((p - q) ** 2 / (p + q) for p, q in zip(P, Q, strict=True))
    real, fake = optimal_logits([p / (p + q) for p, q in zip(P, Q, strict=True)])
    assert least_squares_d(real, fake).item() == pytest.approx(0.25 - triangular / 8, rel=1e-12)


def test_wasserstein_d_at_optimal_critic_is_minus_w1() -> None:
    # Points 0, 1, 2 on the line; the 1-Lipschitz optimum is D(x) = -x (mass moves right).
    w1 = sum(abs(sum(P[: i + 1]) - sum(Q[: i + 1])) for i in range(2))
    real, fake = optimal_logits([0.0, -1.0, -2.0])
    assert wasserstein_d(real, fake).item() == pytest.approx(-w1, rel=1e-12)


# Contract tests every registered objective inherits.

REAL_LOGITS = torch.tensor([-0.6, 0.1, 0.5, 0.8])
# Inside every objective's margins (hinge: |D| < 1; LSGAN: fakes between 0 and 1), where each
# loss is strictly monotone in the logits.
FAKE_LOGITS = torch.tensor([0.2, 0.4, 0.3, 0.7])


@pytest.fixture(params=OBJECTIVES.names())
def objective(request: pytest.FixtureRequest):
    return get_objective(request.param)


def g_loss(objective, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return objective.g_loss(real if objective.g_uses_real else None, fake)


def test_registered_names() -> None:
    expected = {"saturating", "nonsaturating", "hinge", "wgan-gp", "lsgan", "rpgan"}
    assert set(OBJECTIVES.names()) == expected


def test_objective_metadata(objective) -> None:
    assert objective is OBJECTIVES.get(objective.name)
    assert objective.description and "\n" not in objective.description
    assert objective.needs_gradient_penalty == (objective.name == "wgan-gp")
    assert objective.g_uses_real == (objective.name == "rpgan")


def test_losses_are_finite_differentiable_scalars(objective) -> None:
    real = REAL_LOGITS.clone().requires_grad_(True)
    fake = FAKE_LOGITS.clone().requires_grad_(True)
    for loss in (objective.d_loss(real, fake), g_loss(objective, real, fake)):
        assert loss.shape == () and torch.isfinite(loss)
        assert torch.autograd.grad(loss, fake)[0].abs().sum() > 0


def test_d_loss_decreases_as_d_separates_real_from_fake(objective) -> None:
    before = objective.d_loss(REAL_LOGITS, FAKE_LOGITS)
    assert objective.d_loss(REAL_LOGITS + 0.05, FAKE_LOGITS) < before
    assert objective.d_loss(REAL_LOGITS, FAKE_LOGITS - 0.05) < before


def test_g_loss_decreases_as_fakes_look_real(objective) -> None:
    before = g_loss(objective, REAL_LOGITS, FAKE_LOGITS)
    assert g_loss(objective, REAL_LOGITS, FAKE_LOGITS + 0.05) < before


def test_g_loss_without_real_logits(objective) -> None:
    if objective.g_uses_real:
        with pytest.raises(ValueError, match="None"):
            objective.g_loss(None, FAKE_LOGITS)
    else:
        assert torch.isfinite(objective.g_loss(None, FAKE_LOGITS))


def test_registered_games_use_the_documented_losses() -> None:
    real, fake = t(*REAL), t(*FAKE)
    pairs = {
        "saturating": (v_d, lambda r, f: saturating_g(f)),
        "nonsaturating": (v_d, lambda r, f: nonsaturating_g(f)),
        "hinge": (hinge_d, lambda r, f: hinge_g(f)),
        "wgan-gp": (wasserstein_d, lambda r, f: wasserstein_g(f)),
        "lsgan": (least_squares_d, lambda r, f: least_squares_g(f)),
        "rpgan": (relativistic_d, relativistic_g),
    }
    for name, (d_loss, g) in pairs.items():
        objective = get_objective(name)
        assert objective.d_loss(real, fake).item() == d_loss(real, fake).item()
        assert g_loss(objective, real, fake).item() == g(real, fake).item()


def test_unknown_objective_suggests_a_close_name() -> None:
    with pytest.raises(UsageError, match="did you mean 'hinge'"):
        get_objective("hinje")
