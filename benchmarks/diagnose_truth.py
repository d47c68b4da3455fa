"""Does ``minmax diagnose`` tell the truth about a good generator? (issue 22)

    python benchmarks/diagnose_truth.py RUN [RUN ...] [--calibrate-kimg K] [--drop 3]

For each MNIST run (unconditional or class-conditional, e.g. the 10-minute races of
benchmarks/mnist.py): ``diagnose`` as a user runs it (it calibrates D first when the run has no
calibrated D), and the truth from an independent judge, the digits network (``minmax features
train --data ../shared/data/mnist.npz``): each class's share among 10,000 G_ema samples over its
share in the data's test split (what diagnose ranks). Prints per class both of diagnose's
estimates with their intervals (the coverage from D on held-out reals, and G's share read by a
linear probe on D's features), the truth and the flags, then each estimate's Spearman rank
correlation with the truth.

``--drop K``: a generator whose samples the judge reads as class K are redrawn (so G never
makes a K), calibrated afresh on a copy of the run: diagnose must flag class K and no other.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist.npz"


class WithoutClass(nn.Module):
    """G whose samples that ``judge`` reads as class ``k`` are redrawn until none is."""

    def __init__(self, G: nn.Module, judge: nn.Module, k: int) -> None:
        super().__init__()
        self.G, self.judge, self.k = G, judge, k
        self.z_dim, self.n_classes = G.z_dim, getattr(G, "n_classes", 0)
        self.rng = torch.Generator().manual_seed(12345)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = self.G(z, y)
        for _ in range(100):
            bad = self.judge(x)[1].argmax(1) == self.k
            if not bad.any():
                return x
            z = z.clone()
            z[bad] = torch.randn(int(bad.sum()), z.shape[1], generator=self.rng)
            x = x.clone()
            x[bad] = self.G(z[bad], None if y is None else y[bad])
        return x


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = a.argsort().argsort(), b.argsort().argsort()
    return float(np.corrcoef(ra, rb)[0, 1])


def judge_shares(G: nn.Module, judge: nn.Module, n: int = 10_000) -> np.ndarray:
    from minmax.sample import generate

    x, _ = generate(G, n, seed=7)
    with torch.no_grad():
        classes = torch.cat([judge(chunk)[1].argmax(1) for chunk in x.split(1000)])
    return np.bincount(classes.numpy(), minlength=10) / n


def report(name: str, rows: list[dict], truth: np.ndarray, which: str) -> None:
    print(f"## {name} ({which})")
    print("| class | coverage (D on reals) | 90% interval | ESS | G share (probe) | 90% interval "
          "| truth: G share / data share | flagged |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    rows = sorted(rows, key=lambda r: r["class"])
    for r in rows:
        k = r["class"]
        print(f"| {k} | {r['coverage']:.3f} | {r['coverage_low']:.3f}-{r['coverage_high']:.3f} "
              f"| {r['ess']:.0f} | {r['g_share']:.3f} | {r['g_share_low']:.3f}-"
              f"{r['g_share_high']:.3f} | {truth[k]:.3f} "
              f"| {', '.join(r['flagged_by'])} |")  # fmt: skip
    coverage = np.array([r["coverage"] for r in rows])
    probe = np.array([r["g_share"] for r in rows])
    flagged = [r["class"] for r in rows if r["flagged"]]
    print(f"Spearman with the truth: coverage {spearman(coverage, truth):.3f}, probe "
          f"{spearman(probe, truth):.3f}; flagged: {flagged}; truth range "
          f"{truth.min():.3f}-{truth.max():.3f}\n", flush=True)  # fmt: skip


def main() -> None:
    from minmax.machine import machine_summary
    from minmax.metrics.features.digits import default_digits_path, load_feature_net
    from minmax.ratio.diagnose import diagnose
    from minmax.sample import load_generator

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--calibrate-kimg", type=float, help="default: minmax calibrate's")
    parser.add_argument("--n", type=int, default=5000, help="held-out reals diagnose ranks")
    parser.add_argument("--drop", type=int, default=None, help="also: G without this class")
    args = parser.parse_args()
    print(f"# {machine_summary()}", flush=True)
    judge, _ = load_feature_net(default_digits_path("mnist"))
    judge.eval().requires_grad_(False)
    with np.load(MNIST, allow_pickle=False) as f:
        data_share = np.bincount(f["y_test"], minlength=10) / len(f["y_test"])
    for run in map(Path, args.runs):
        with tempfile.TemporaryDirectory() as out:
            result = diagnose(run, out, args.n, 0, calibrate_kimg=args.calibrate_kimg)
        truth = judge_shares(load_generator(run, "G_ema"), judge) / data_share
        report(str(run), result.rows, truth, result.discriminator)
        if args.drop is None:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / run.name
            shutil.copytree(run, copy, ignore=shutil.ignore_patterns("calibrated", "diagnose"))
            G = WithoutClass(load_generator(run, "G_ema"), judge, args.drop).eval()
            for name in ("minmax.ratio.diagnose", "minmax.ratio.calibrate"):  # filtered G
                sys.modules[name].load_generator = lambda *a, G=G, **k: G
            result = diagnose(copy, Path(tmp) / "d", args.n, 0,
                              calibrate_kimg=args.calibrate_kimg)  # fmt: skip
            truth = judge_shares(G, judge) / data_share
            report(f"{run} without class {args.drop}", result.rows, truth, result.discriminator)


if __name__ == "__main__":
    main()
