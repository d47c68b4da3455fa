"""Adaptive discriminator augmentation, ADA (Karras et al. 2020, "Training Generative
Adversarial Networks with Limited Data").

Every image D sees, real or generated, goes through a fixed pipeline of operations, each
applied to each image with probability p. Because G's gradient flows through the pipeline
(geometric ops resample with a batched affine grid, colour ops are per-image matrices), D can
be fed augmented images without G learning to produce them, *as long as the augmentation does
not leak*: an op leaks when D cannot tell the clean distribution from its augmented version.
The paper (its Fig. 3 and §2.2) shows the ops below do not leak while p < 0.8: with p < 1
the identity stays the most likely outcome of each op, so the only G whose augmented images
match the augmented data is the one that matches the clean data.

p adapts to how much D overfits, measured by r_t = E[sign(D(x_real))] over the last
``interval`` D steps (E[sign(D(x_real) − D(x_fake))] over the step's pairs under a loss that
sees only logit differences, RpGAN or WGAN: there D's sign says nothing, its offset drifts):
every ``interval`` steps ``p += sign(r_t − target) · batch · interval / (kimg · 1000)``,
clamped to [0, 1], so p can go from 0 to 1 in ``kimg`` thousand images.

Every random draw comes from the ``torch.Generator`` given (the run's local stream, saved in
checkpoints); p and the r_t accumulators are saved by ``state_dict`` and resume exactly.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from minmax.errors import UsageError
from minmax.registry import did_you_mean

GEOMETRIC = ["xflip", "rot90", "xint", "scale", "rotate", "aniso", "xfrac"]
COLOUR = ["brightness", "contrast", "lumaflip", "hue", "saturation"]
GREY_COLOUR = ["brightness", "contrast"]  # what a 1-channel image has: the rest need RGB
OPS = [*GEOMETRIC, *COLOUR, "cutout"]
# The paper's "bgc" set: pixel blitting (xflip, rot90, xint), general geometric and colour
# ops, its best combination and leak-free for p < 0.8 (its Fig. 3/4). Cutout is leak-free too
# but did not help there (Fig. 4a), so it is available and off by default.
DEFAULT_OPS = ",".join([*GEOMETRIC, *COLOUR])

# Strengths, as in the paper's Appendix B (images in [-1, 1]).
XINT_MAX = 0.125  # integer translation: up to this fraction of the image size
SCALE_STD = 0.2  # isotropic/anisotropic scaling: log2 of the factor ~ N(0, std²)
XFRAC_STD = 0.125  # fractional translation, in image sizes
BRIGHTNESS_STD = 0.2  # added to every channel
CONTRAST_STD = 0.5  # log2 of the contrast factor
SATURATION_STD = 1.0  # log2 of the saturation factor
CUTOUT_SIZE = 0.5  # cutout square's side, in image sizes
LUMA = torch.tensor([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3)  # the luma axis of RGB


def parse_ops(ops: str) -> list[str]:
    """``"xflip,rot90"`` -> ["xflip", "rot90"]; unknown names are UsageErrors."""
    names = [name.strip() for name in ops.split(",") if name.strip()]
    for name in names:
        if name not in OPS:
            raise UsageError(f"unknown augment.ada_ops entry '{name}': {did_you_mean(name, OPS)}")
    return names


def _eye(n: int, size: int) -> Tensor:
    return torch.eye(size).repeat(n, 1, 1)


def _affine(a: Tensor, b: Tensor, c: Tensor, d: Tensor, tx: Tensor, ty: Tensor) -> Tensor:
    """Per-image 3×3 matrices [[a, b, tx], [c, d, ty], [0, 0, 1]]."""
    m = _eye(a.shape[0], 3)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = a, b, tx
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = c, d, ty
    return m


def _rotation(theta: Tensor) -> Tensor:
    zero = torch.zeros_like(theta)
    cos, sin = torch.cos(theta), torch.sin(theta)
    return _affine(cos, -sin, sin, cos, zero, zero)


class ADA:
    """Callable ``x -> T_p(x)`` on (N, C, H, W) images in [-1, 1], with p adapted by
    ``observe`` (the sign of D's verdict on reals, once per D step)."""

    def __init__(
        self,
        ops: str,
        rng: torch.Generator,
        *,
        target: float = 0.6,
        kimg: float = 500.0,
        interval: int = 4,
        batch_size: int = 64,
        fixed_p: float | None = None,
    ) -> None:
        self.names = parse_ops(ops)
        self.rng = rng
        self.target, self.kimg, self.interval, self.batch_size = target, kimg, interval, batch_size
        self.fixed_p = fixed_p
        self.p = 0.0 if fixed_p is None else fixed_p
        self.rt: float | None = None  # the last interval's r_t
        self.signs: Tensor | None = None  # (sum of sign(D(x_real)), count) since the last update
        self.steps = 0  # D steps observed since the last update

    def __bool__(self) -> bool:
        return True

    # Pipeline.
    def _draw(self, n: int) -> Tensor:
        return torch.rand(n, generator=self.rng, device=self.rng.device).cpu()

    def _normal(self, n: int) -> Tensor:
        return torch.randn(n, generator=self.rng, device=self.rng.device).cpu()

    def _apply(self, n: int) -> Tensor:
        """Which of n images this op touches: each with probability p."""
        return self._draw(n) < self.p

    def __call__(self, x: Tensor) -> Tensor:
        if self.p <= 0 or not self.names:
            return x
        n, channels, h, w = x.shape
        geometric = [name for name in self.names if name in GEOMETRIC]
        if geometric:
            m = _eye(n, 3)
            for name in geometric:
                m = m @ self._geometric(name, n, h, w)
            grid = F.affine_grid(m[:, :2].to(x), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                              align_corners=False)  # fmt: skip
        allowed = COLOUR if channels == 3 else GREY_COLOUR
        colour = [name for name in self.names if name in allowed]
        if colour:
            x = self._colour(x, colour)
        if "cutout" in self.names:
            x = self._cutout(x)
        return x

    def _geometric(self, name: str, n: int, h: int, w: int) -> Tensor:
        """A 3×3 matrix per image in grid_sample's [-1, 1] coordinates (output -> input
        location); the identity for images this op skips. Every op's distribution is
        symmetric, so mapping output to input samples the same transforms as the reverse."""
        on = self._apply(n).float()
        one, zero = torch.ones(n), torch.zeros(n)
        if name == "xflip":
            flip = 1 - 2 * (self._draw(n) < 0.5).float() * on
            return _affine(flip, zero, zero, one, zero, zero)
        if name == "rot90":
            k = (torch.floor(self._draw(n) * 4) * on).long()  # quarter turns
            cos, sin = torch.tensor([1.0, 0, -1, 0])[k], torch.tensor([0.0, 1, 0, -1])[k]
            return _affine(cos, -sin, sin, cos, zero, zero)
        if name == "xint":  # whole pixels: 2/W per pixel in [-1, 1] coordinates
            dx = torch.round((self._draw(n) * 2 - 1) * XINT_MAX * w) * on
            dy = torch.round((self._draw(n) * 2 - 1) * XINT_MAX * h) * on
            return _affine(one, zero, zero, one, dx * 2 / w, dy * 2 / h)
        if name == "scale":
            s = torch.exp2(self._normal(n) * SCALE_STD * on)
            return _affine(s, zero, zero, s, zero, zero)
        if name == "rotate":
            return _rotation((self._draw(n) * 2 - 1) * math.pi * on)
        if name == "aniso":
            s = torch.exp2(self._normal(n) * SCALE_STD * on)
            return _affine(s, zero, zero, 1 / s, zero, zero)
        # xfrac: fractional translation, in image sizes (an image spans 2 in these coordinates)
        dx, dy = self._normal(n) * XFRAC_STD * 2 * on, self._normal(n) * XFRAC_STD * 2 * on
        return _affine(one, zero, zero, one, dx, dy)

    def _colour(self, x: Tensor, names: list[str]) -> Tensor:
        """A 4×4 matrix per image on homogeneous RGB (a 2×2 one on grey: x·c + b)."""
        n, channels = x.shape[:2]
        c = _eye(n, 4)
        v = LUMA.view(1, 4, 1)
        vv = v @ v.transpose(1, 2)  # projection on the luma axis
        for name in names:
            on = self._apply(n).float()
            if name == "brightness":
                shift = _eye(n, 4)
                shift[:, :3, 3] = (self._normal(n) * BRIGHTNESS_STD * on).view(n, 1)
                c = shift @ c
            elif name == "contrast":
                scale = _eye(n, 4)
                factor = torch.exp2(self._normal(n) * CONTRAST_STD * on).view(n, 1)
                scale[:, [0, 1, 2], [0, 1, 2]] = factor.expand(n, 3)
                c = scale @ c
            elif name == "lumaflip":  # a Householder reflection across the luma plane
                flip = (self._draw(n) < 0.5).float() * on
                c = (_eye(n, 4) - 2 * vv * flip.view(n, 1, 1)) @ c
            elif name == "hue":  # a rotation about the luma axis
                theta = (self._draw(n) * 2 - 1) * math.pi * on
                c = _axis_rotation(theta) @ c
            else:  # saturation: scale the distance from the luma axis
                s = torch.exp2(self._normal(n) * SATURATION_STD * on).view(n, 1, 1)
                c = (vv + (_eye(n, 4) - vv) * s) @ c
        c = c.to(x)
        if channels == 1:  # brightness and contrast act on each channel alike
            return x * c[:, 0, 0].view(n, 1, 1, 1) + c[:, 0, 3].view(n, 1, 1, 1)
        return torch.einsum("nij,njhw->nihw", c[:, :3, :3], x) + c[:, :3, 3].view(n, 3, 1, 1)

    def _cutout(self, x: Tensor) -> Tensor:
        """Zero a square of side CUTOUT_SIZE × size, centred anywhere, in the chosen images."""
        n, _, h, w = x.shape
        on = self._apply(n).to(x.device)
        cy, cx = self._draw(n).to(x.device), self._draw(n).to(x.device)
        ys = (torch.arange(h, device=x.device) + 0.5) / h
        xs = (torch.arange(w, device=x.device) + 0.5) / w
        inside_y = (ys.view(1, h) - cy.view(n, 1)).abs() < CUTOUT_SIZE / 2
        inside_x = (xs.view(1, w) - cx.view(n, 1)).abs() < CUTOUT_SIZE / 2
        inside = inside_y.view(n, h, 1) & inside_x.view(n, 1, w) & on.view(n, 1, 1)
        return x * (~inside).unsqueeze(1).to(x)

    # Adaptation.
    @torch.no_grad()
    def observe(self, verdicts: Tensor) -> None:
        """Add one D step's signs of D's verdicts on reals (D(x_real), or D(x_real) − D(x_fake)
        under a relative loss; all micro-batches together); every ``interval``
        steps, move p. The sums are all-reduced at once under torch.distributed (two numbers
        beside DDP's gradients), so every rank holds the same p and a checkpoint written by
        rank 0 resumes every rank exactly."""
        signs = verdicts.detach().float().sign()
        stats = torch.stack([signs.sum(), torch.tensor(float(signs.numel()), device=signs.device)])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
        self.signs = stats if self.signs is None else self.signs.to(stats) + stats
        self.steps += 1
        if self.steps < self.interval:
            return
        total, count = self.signs.tolist()
        self.rt = total / max(count, 1.0)
        self.signs, self.steps = None, 0
        if self.fixed_p is None:
            self.p = self.next_p(self.p, self.rt)

    def next_p(self, p: float, rt: float) -> float:
        """p + sign(r_t − target) · batch · interval / (kimg · 1000), clamped to [0, 1]."""
        step = self.batch_size * self.interval / (self.kimg * 1000)
        sign = (rt > self.target) - (rt < self.target)
        return min(max(p + sign * step, 0.0), 1.0)

    def scalars(self) -> dict[str, float]:
        """What the log shows: ``ada_p`` and, once measured, ``ada_rt``."""
        values = {"ada_p": self.p}
        if self.rt is not None:
            values["ada_rt"] = self.rt
        return values

    def state_dict(self) -> dict:
        signs = None if self.signs is None else self.signs.tolist()
        return {"p": self.p, "rt": self.rt, "signs": signs, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.p, self.rt, self.steps = state["p"], state["rt"], state["steps"]
        self.signs = None if state["signs"] is None else torch.tensor(state["signs"])


def _axis_rotation(theta: Tensor) -> Tensor:
    """4×4 rotations by ``theta`` about the luma axis (Rodrigues' formula)."""
    n = theta.shape[0]
    a = LUMA[:3]
    k = torch.tensor([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    cos, sin = torch.cos(theta).view(n, 1, 1), torch.sin(theta).view(n, 1, 1)
    r = torch.eye(3) * cos + k * sin + torch.outer(a, a) * (1 - cos)
    m = _eye(n, 4)
    m[:, :3, :3] = r
    return m


def check_image_data(shape: tuple[int, ...]) -> None:
    """ADA transforms images: refuse points and toy densities."""
    if len(shape) != 3:
        raise UsageError(
            "augment.ada=true augments images, and this dataset holds points: use an image "
            "dataset or drop augment.ada"
        )
