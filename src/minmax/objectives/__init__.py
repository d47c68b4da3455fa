"""GAN objectives: pure losses of discriminator logits, a registry of games, and penalties."""

from minmax.objectives.losses import (
    OBJECTIVES,
    Objective,
    flat_logits,
    get_objective,
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
from minmax.objectives.regularizers import gradient_penalty, r1_penalty, r2_penalty

__all__ = [
    "OBJECTIVES",
    "Objective",
    "flat_logits",
    "get_objective",
    "gradient_penalty",
    "hinge_d",
    "hinge_g",
    "least_squares_d",
    "least_squares_g",
    "nonsaturating_g",
    "r1_penalty",
    "r2_penalty",
    "relativistic_d",
    "relativistic_g",
    "saturating_g",
    "v_d",
    "v_g",
    "wasserstein_d",
    "wasserstein_g",
]
