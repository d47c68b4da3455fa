"""Points in the user's units outside, standardised units inside: the one affine map between.

The toy lab's hyper-parameters are in the data's units: R1's γ scales with the square of the
data's scale, the Fourier head's frequencies are cycles per unit of x, and G's first output
sits near 0. A user's points in millimetres with an offset (×40 and shifted) took a run that
captured 14 of 15 modes down to 2 of 15 (issue 17). So a points file is standardised per
coordinate for training, u = (x − mean) / std, and the networks only ever see u; wherever a
user meets them, the map is undone: G's samples are x = mean + std · u, D's input is u.

Per coordinate, not whitened: columns of a user's table may be in different units (one in mm,
one in seconds), which per-coordinate scaling absorbs; whitening would also rotate, mixing the
columns, and needs a full-rank covariance (a file with two proportional columns would fail). A
mixture's isotropic components become axis-aligned ellipses when the columns' spreads differ,
which the per-coordinate HQ protocol does not care about.

The map is saved in the checkpoint's networks spec (``networks.json``: ``"units": {"mean": [...],
"std": [...]}``), so ``minmax.models.rebuild`` returns G and D in the user's units; the weights
files are those of the standardised networks, whatever the wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from minmax.config import STANDARDIZE
from minmax.errors import UsageError

FIT_SAMPLES = 100_000  # draws a named density's map is fitted on (data.standardize=on)
FIT_SEED = 0
FORWARDED = frozenset({"z_dim", "n_classes", "prior"})  # what callers read off G or D


@dataclass(frozen=True)
class Standardizer:
    """u = (x − mean) / std per coordinate; computed in float64, returned in x's dtype."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, points: Tensor, name: str = "the data") -> Standardizer:
        """Mean and (population) std of each column of ``points`` (N, d).

        A single point, or a column with no spread (every value the same, or differences
        below float32's rounding at its values), has no scale to divide by: a UsageError
        naming the column, 1-based as in a spreadsheet.
        """
        x = torch.as_tensor(points).double()
        if len(x) < 2:
            raise UsageError(
                f"points file '{name}' holds a single point: standardising needs a spread in "
                "each column; give at least two different points (or data.standardize=off)"
            )
        mean, std = x.mean(0), x.std(0, unbiased=False)
        flat = std <= mean.abs() * 2**-22  # ~ float32's rounding: no spread left to learn
        if bool(flat.any()):
            column = int(flat.nonzero()[0]) + 1
            raise UsageError(
                f"points file '{name}' has no spread in column {column} (1-based; every point "
                f"has {float(mean[column - 1]):.7g}): drop that column, or set "
                "data.standardize=off"
            )
        return cls(tuple(mean.tolist()), tuple(std.tolist()))

    def _affine(self, like: Tensor) -> tuple[Tensor, Tensor]:
        mean = torch.tensor(self.mean, dtype=torch.float64, device=like.device)
        return mean, torch.tensor(self.std, dtype=torch.float64, device=like.device)

    def encode(self, x: Tensor) -> Tensor:
        """User units -> standardised: (x − mean) / std."""
        mean, std = self._affine(x)
        return ((x.double() - mean) / std).to(x.dtype)

    def decode(self, u: Tensor) -> Tensor:
        """Standardised -> user units: mean + std · u."""
        mean, std = self._affine(u)
        return (mean + std * u.double()).to(u.dtype)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Standardizer:
        return cls(tuple(map(float, data["mean"])), tuple(map(float, data["std"])))


def standardizer_for(density: Any, mode: str, name: str) -> Standardizer | None:
    """The map ``data.standardize`` asks for: ``auto`` standardises users' points files
    (``Points``) and leaves the named densities in their own units, where their presets'
    hyper-parameters and measured figures are; ``on`` fits a named density's map on
    FIT_SAMPLES draws."""
    if mode not in STANDARDIZE:
        raise UsageError(f"unknown data.standardize '{mode}': choose from {', '.join(STANDARDIZE)}")
    if mode == "off" or (mode == "auto" and not hasattr(density, "data")):
        return None
    data = getattr(density, "data", None)
    if data is None:
        data = density.sample(FIT_SAMPLES, torch.Generator().manual_seed(FIT_SEED))
    return Standardizer.fit(data, name)


class InUserUnits(nn.Module):
    """A standardised G or D, seen in the user's units.

    G: ``x = decode(G(z, y))``; D: ``logits = D(encode(x), y)``, so D's gradients and logits
    are those of the trained network at the standardised point. ``state_dict`` and
    ``load_state_dict`` are the wrapped network's, so a checkpoint's weights load with or
    without the wrapper.
    """

    def __init__(self, net: nn.Module, units: Standardizer, role: str) -> None:
        super().__init__()
        if role not in ("G", "D"):
            raise ValueError(f"role must be 'G' or 'D', got {role!r}")
        self.net, self.units, self.role = net, units, role

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.role == "G":
            return self.units.decode(self.net(x, y))
        return self.net(self.units.encode(x), y)

    def __getattr__(self, name: str) -> Any:
        if name in FORWARDED:
            return getattr(self.net, name)
        return super().__getattr__(name)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, *args: Any, **kwargs: Any) -> Any:
        return self.net.load_state_dict(state_dict, *args, **kwargs)


def with_units(spec: dict, units: Standardizer | None) -> dict:
    """The networks spec with the map saved beside the kwargs (unchanged when None)."""
    return spec if units is None else {**spec, "units": units.to_dict()}


def in_user_units(module: nn.Module, spec: dict, role: str) -> nn.Module:
    """``module`` wrapped to take and give the user's units when ``spec`` saved a map."""
    if "units" not in spec:
        return module
    return InUserUnits(module, Standardizer.from_dict(spec["units"]), role)
