"""Memorisation check: are generated images closer to the training set than new real images?

The three-sample protocol of Meehan, Chaudhuri & Dasgupta, "A Non-Parametric Test to Detect
Data-Copying in Generative Models" (AISTATS 2020): a training set T, held-out real images
H = {h_i} (n of them, never trained on) and generated images G = {g_j} (m), all through one
feature network phi. Each image's distance to the training set is

    d(x) = min_{t in T} ||phi(x) - phi(t)||_2          (exact: torch.cdist over row chunks)

Held-out images show how far a *new* draw from the data lies from T; a generator that copies
its training images (or small variations of them) lies closer. Three numbers:

    ratio = median_j d(g_j) / median_i d(h_i)
        the effect size the verdict reads: ~1 when G's images are as far from T as new data,
        0 for exact copies, above 1 for a generator whose images are less realistic than the
        data (the usual case). Medians, so a few outliers on either side do not move it.
    Z_U = (U - mn/2) / sqrt(mn(m + n + 1)/12),   U = sum_ij [d(g_j) > d(h_i)] + [d(g_j) = d(h_i)]/2
        Meehan et al.'s Mann-Whitney statistic over one cell (the whole feature space): about
        N(0, 1) when G's and H's distances have one law, << 0 (e.g. below -3) when G's images
        are systematically closer. It grows with the sample sizes, so it says "significant",
        not "how much": that is the ratio's job.
    close_share = share of g_j with d(g_j) below the 1st percentile of the d(h_i)
        about 1% without copying; a generator that copies a part of its outputs exactly (the
        "90 images were memorised" case) shows it here while its median hardly moves.

Verdict: "copies its training images" when ratio < RATIO_FLAG (0.5: the typical generated image
lies at half the distance a new real image does, far outside the sampling noise of the medians
-- a few percent at 1,000 images -- and well above what exact or near copies give); otherwise
"copies part of its training images" when close_share >= CLOSE_FLAG (5x the 1% expected);
otherwise "no copying detected".

Limits: one global cell, so copying in one region can be hidden by underfitting elsewhere (the
reason Meehan et al. partition the space into cells); a generator that makes only the
data's densest, most typical images (say, plain 1s) can score below 1 without copying --
look at the grid of closest pairs before concluding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from minmax.errors import UsageError
from minmax.images import save_grid
from minmax.metrics.features import FeatureExtractor, as_uint8_images
from minmax.metrics.frechet import ArrayLike, as_feature_matrix
from minmax.metrics.manifold import _pairwise, _rows_per_chunk

RATIO_FLAG = 0.5  # ratio of medians below this: G copies its training images
CLOSE_QUANTILE = 0.01  # "close": nearer to T than this quantile of the held-out distances
CLOSE_FLAG = 0.05  # share of close generated images that flags partial copying
GRID_PAIRS = 32  # closest generated/training pairs in the grid


@dataclass
class Memorisation:
    """The check's numbers (see the module docstring) and, per generated image, its
    distance to T and the index of its nearest training image."""

    n_train: int
    n_generated: int
    n_held_out: int
    median_generated: float
    median_held_out: float
    ratio: float
    z_u: float
    close_share: float
    close_distance: float  # the held-out distances' CLOSE_QUANTILE
    verdict: str
    flagged: bool
    distances: np.ndarray = field(repr=False)  # (m,) d(g_j)
    nearest: np.ndarray = field(repr=False)  # (m,) index into T
    held_out_distances: np.ndarray = field(repr=False)  # (n,) d(h_i)

    def as_dict(self) -> dict:
        """The numbers, JSON-ready (no per-image arrays)."""
        names = ("n_train", "n_generated", "n_held_out", "median_generated", "median_held_out",
                 "ratio", "z_u", "close_share", "close_distance", "verdict", "flagged")  # fmt: skip
        return {name: getattr(self, name) for name in names}

    def line(self) -> str:
        """The one-line verdict with its numbers."""
        return (
            f"memorisation: {self.verdict}: median distance to the training set "
            f"{self.median_generated:.4g} (generated) vs {self.median_held_out:.4g} (held-out), "
            f"ratio {self.ratio:.3f} (flagged below {RATIO_FLAG:g}); Z_U {self.z_u:.1f}; "
            f"{100 * self.close_share:.1f}% closer than the held-out 1st percentile (flagged "
            f"from {100 * CLOSE_FLAG:g}%); {self.n_generated} generated, {self.n_held_out} "
            f"held-out, {self.n_train} training images"
        )


def nearest_neighbours(query: ArrayLike, train: ArrayLike) -> tuple[Tensor, Tensor]:
    """Exact Euclidean distance from each row of ``query`` to its nearest row of ``train``,
    and that row's index: float64 ``torch.cdist`` on query chunks of ~4M distances each
    (10,000 x 60,000 at 128-d takes seconds on a CPU)."""
    q = torch.from_numpy(as_feature_matrix(query, "query features"))
    t = torch.from_numpy(as_feature_matrix(train, "training features"))
    if not len(t):
        raise UsageError("the training set is empty: nothing to compare with")
    if q.shape[1] != t.shape[1]:
        raise UsageError(f"feature sizes differ: {q.shape[1]} vs training {t.shape[1]}")
    distances, index = [], []
    step = _rows_per_chunk(t.shape[0])
    for start in range(0, q.shape[0], step):
        d, i = _pairwise(q[start : start + step], t).min(dim=1)
        distances.append(d)
        index.append(i)
    if not distances:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    return torch.cat(distances), torch.cat(index)


def mann_whitney_u(a: ArrayLike, b: ArrayLike) -> float:
    """U: the pairs (a_i, b_j) with a_i > b_j, ties as a half (U / (len a · len b) is the
    AUC of telling a from b by value)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.sort(np.asarray(b, dtype=np.float64))
    below = np.searchsorted(b, a, side="left")  # b's values < a_i
    ties = np.searchsorted(b, a, side="right") - below
    return float(below.sum() + 0.5 * ties.sum())


def mann_whitney_z(generated: ArrayLike, held_out: ArrayLike) -> float:
    """Z_U of the module docstring: U counts pairs with d(g) > d(h), ties as a half; the
    normal approximation without a tie correction. Negative when G's distances are smaller."""
    m, n = len(generated), len(held_out)
    u = mann_whitney_u(generated, held_out)
    return float((u - m * n / 2) / math.sqrt(m * n * (m + n + 1) / 12))


def memorisation(train: ArrayLike, held_out: ArrayLike, generated: ArrayLike) -> Memorisation:
    """The check on (N_T, d) training, (n, d) held-out and (m, d) generated features."""
    for what, x in (("held-out", held_out), ("generated", generated)):
        if len(x) < 2:
            raise UsageError(f"the memorisation check needs at least 2 {what} images, got {len(x)}")
    d_gen, nearest = nearest_neighbours(generated, train)
    d_held, _ = nearest_neighbours(held_out, train)
    median_gen, median_held = float(np.median(d_gen.numpy())), float(np.median(d_held.numpy()))
    if median_held > 0:
        ratio = median_gen / median_held
    else:  # half the held-out images are in the training set: no scale to compare with
        raise UsageError(
            "half the held-out images have a copy in the training set (median distance 0): "
            "the held-out split must not overlap the training images"
        )
    close_distance = float(np.quantile(d_held.numpy(), CLOSE_QUANTILE))  # linear interpolation
    close_share = float((d_gen < close_distance).double().mean())
    if ratio < RATIO_FLAG:
        verdict = "copies its training images"
    elif close_share >= CLOSE_FLAG:
        verdict = "copies part of its training images"
    else:
        verdict = "no copying detected"
    return Memorisation(
        n_train=len(train), n_generated=len(d_gen), n_held_out=len(d_held),
        median_generated=median_gen, median_held_out=median_held, ratio=ratio,
        z_u=mann_whitney_z(d_gen.numpy(), d_held.numpy()), close_share=close_share,
        close_distance=close_distance, verdict=verdict, flagged=verdict != "no copying detected",
        distances=d_gen.numpy(), nearest=nearest.numpy(), held_out_distances=d_held.numpy(),
    )  # fmt: skip


def check_images(generated, train, held_out) -> tuple[Tensor, Tensor, Tensor]:
    """Three uint8 (N, C, H, W) image sets of one shape, none empty; else a UsageError."""
    sets = {"generated": generated, "training": train, "held-out": held_out}
    sets = {what: as_uint8_images(images) for what, images in sets.items()}
    for what, images in sets.items():
        if not len(images):
            raise UsageError(f"no {what} images: the memorisation check needs some of each")
    shapes = {what: tuple(images.shape[1:]) for what, images in sets.items()}
    if len(set(shapes.values())) > 1:
        text = ", ".join(f"{what} {'×'.join(map(str, s))}" for what, s in shapes.items())
        raise UsageError(
            f"image shapes differ ({text}): generated, training and held-out images must have "
            "the same channels and size"
        )
    return sets["generated"], sets["training"], sets["held-out"]


def check_generator(
    generated, train, held_out, extractor: FeatureExtractor, n: int, seed: int = 0
) -> Memorisation:
    """The check on images: the first ``n`` generated images against a seeded random ``n``
    of the held-out images, both measured to every training image in ``extractor``'s
    features."""
    generated, train, held_out = check_images(generated, train, held_out)
    for what, images in (("generated", generated), ("held-out", held_out)):
        if n > len(images):
            raise UsageError(
                f"the memorisation check asks for {n} {what} images, there are {len(images)}: "
                "lower --n (or the metric's count)"
            )
    if n < 2:
        raise UsageError(f"the memorisation check needs at least 2 images, got n={n}")
    pick = torch.randperm(len(held_out), generator=torch.Generator().manual_seed(seed))[:n]
    return memorisation(
        extractor.features(train),
        extractor.features(held_out[pick.sort().values]),
        extractor.features(generated[:n]),
    )


def save_pairs_grid(
    generated: Tensor, train: Tensor, result: Memorisation, path: str | Path,
    n_pairs: int = GRID_PAIRS,
) -> Path:  # fmt: skip
    """A PNG of the ``n_pairs`` generated images closest to the training set, closest first:
    rows of 8 generated images, each row followed by a row of their nearest training images."""
    order = torch.from_numpy(np.argsort(result.distances, kind="stable")[:n_pairs])
    fakes = as_uint8_images(generated)[order]
    reals = as_uint8_images(train)[torch.from_numpy(result.nearest)[order]]
    rows = []
    for start in range(0, len(order), 8):
        rows += [fakes[start : start + 8], reals[start : start + 8]]
    blank = torch.full_like(fakes[:1], 255)
    rows = [torch.cat([row, blank.expand(8 - len(row), -1, -1, -1)]) for row in rows]
    return save_grid(torch.cat(rows), path, n_cols=8)
