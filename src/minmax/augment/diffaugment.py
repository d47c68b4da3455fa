"""DiffAugment (Zhao et al. 2020): the same random, differentiable transforms on reals and fakes.

With little data D memorises the training images. Augmenting only the reals would teach G to
make augmented images; augmenting both, with transforms G's gradient flows through, lets D see
more variety while the game's solution stays Q_G = P (each transform is applied to both sides).

Every transform draws from the ``torch.Generator`` it is given, so a seeded run is
reproducible and its checkpoint can resume the augmentation stream exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from minmax.errors import UsageError
from minmax.registry import did_you_mean


def _uniform(x: Tensor, rng: torch.Generator, shape: tuple[int, ...]) -> Tensor:
    return torch.rand(shape, generator=rng, device=rng.device).to(x)


def color(x: Tensor, rng: torch.Generator) -> Tensor:
    """Brightness ±0.5, saturation ×[0, 2], contrast ×[0.5, 1.5], one draw per image."""
    n = x.shape[0]
    x = x + (_uniform(x, rng, (n, 1, 1, 1)) - 0.5)
    if x.shape[1] > 1:  # saturation: scale each pixel's distance from its channel mean
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_uniform(x, rng, (n, 1, 1, 1)) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, rng, (n, 1, 1, 1)) + 0.5) + mean


def translation(x: Tensor, rng: torch.Generator, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to ``ratio`` of its size in x and y, filling with zeros."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (n, 1, 1), generator=rng, device=rng.device).to(x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1, 1), generator=rng, device=rng.device).to(x.device)
    padded = torch.nn.functional.pad(x, [sx, sx, sy, sy])
    rows = torch.arange(h, device=x.device).view(1, h, 1) + sy - dy  # (n, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w) + sx - dx  # (n, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: Tensor, rng: torch.Generator, ratio: float = 0.5) -> Tensor:
    """Zero one square of side ``ratio`` × size per image, centred anywhere in the image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h, (n, 1, 1), generator=rng, device=rng.device).to(x.device)
    cx = torch.randint(0, w, (n, 1, 1), generator=rng, device=rng.device).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - (cy - ch // 2)
    cols = torch.arange(w, device=x.device).view(1, 1, w) - (cx - cw // 2)
    inside = (rows >= 0) & (rows < ch) & (cols >= 0) & (cols < cw)
    return x * (~inside).unsqueeze(1).to(x)


POLICIES = {"color": color, "translation": translation, "cutout": cutout}


def parse_policy(policy: str) -> list[str]:
    """``"translation,cutout"`` -> ["translation", "cutout"]; unknown names are UsageErrors."""
    names = [name.strip() for name in policy.split(",") if name.strip()]
    for name in names:
        if name not in POLICIES:
            hint = did_you_mean(name, list(POLICIES))
            raise UsageError(f"unknown augment.policy entry '{name}': {hint}")
    return names


class DiffAugment:
    """Callable ``x -> T(x)`` for a policy; the identity when the policy is empty."""

    def __init__(self, policy: str, rng: torch.Generator) -> None:
        self.names = parse_policy(policy)
        self.rng = rng

    def __bool__(self) -> bool:
        return bool(self.names)

    def __call__(self, x: Tensor) -> Tensor:
        for name in self.names:
            x = POLICIES[name](x, self.rng)
        return x
