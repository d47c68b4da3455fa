"""Users' points with defaults: Gaussian mixtures built here, trained with `minmax train --data`.

Usage: python benchmarks/points.py [--datasets m15-2d ...] [--units user scaled] [--seeds 5]
       [--first-seed 0] [--workdir DIR] [key=value ...]

Each dataset is a mixture of isotropic Gaussians (5 to 40 components, unequal weights, 2-D or
3-D, per-component stds of 1-10% of the extent) with means placed at least 4 (s_i + s_j)
apart inside the unit box, so that the 3-std balls of the protocol never touch. It is written
as a points file of N_POINTS rows in its own units ("user": the unit box) and again ×1000 and
shifted ("scaled", as a user's millimetres with an offset would be). Each file is trained by
the command line as a user would (`minmax train --data FILE`, the preset it picks, plus the
overrides given here), then 2,500 samples of G_ema (`minmax.sample`) are scored against the
known mixture in the file's units by the PacGAN protocol (`minmax.metrics.mode_report`: a
sample is high quality within 3 std of the nearest mean, that component's std).
Targets (issue 17): every mode in every seed, HQ >= 97% mean and >= 95% worst, rev-KL <= 0.02,
<= 60 s a run; the same for the scaled copy. Wall time is the whole `minmax train` call.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import torch

from minmax.cli import main as minmax_main
from minmax.data.toy import GaussianMixture
from minmax.machine import machine_summary
from minmax.metrics import mode_report
from minmax.sample import load_generator, sample

N_POINTS = 60_000
N_SAMPLES = 2500
SAMPLE_SEED = 12_345  # the scored samples' z, the same for every run
SEPARATION = 4.0  # means at least SEPARATION * (s_i + s_j) apart
WEIGHT_RANGE = (1.0, 5.0)  # weights drawn uniformly here, then normalised: up to 5:1
SCALE, SHIFT = 1000.0, (-25_000.0, 7_300.0, 480.0)  # the "scaled" copy: x * SCALE + SHIFT
TARGET_HQ_MEAN, TARGET_HQ_WORST, TARGET_KL, TARGET_WALL = 0.97, 0.95, 0.02, 60.0


@dataclass(frozen=True)
class MixtureSpec:
    """A mixture to build: components, dimension, per-component std range (of the unit box)."""

    name: str
    n_modes: int
    dim: int
    std_low: float
    std_high: float
    seed: int
    tuned: bool  # used while tuning the points preset (False: held out)


DATASETS = [
    MixtureSpec("m5-2d", 5, 2, 0.05, 0.10, 1, True),
    MixtureSpec("m15-2d", 15, 2, 0.02, 0.05, 2, True),
    MixtureSpec("m40-2d", 40, 2, 0.01, 0.02, 3, True),
    MixtureSpec("m10-3d", 10, 3, 0.03, 0.08, 4, True),
    MixtureSpec("m40-3d", 40, 3, 0.01, 0.03, 5, True),
    MixtureSpec("m25-2d", 25, 2, 0.015, 0.04, 6, False),
    MixtureSpec("m8-3d", 8, 3, 0.04, 0.10, 7, False),
    MixtureSpec("m30-3d", 30, 3, 0.01, 0.04, 8, False),
]


def build_mixture(spec: MixtureSpec) -> GaussianMixture:
    """Means by rejection inside [0, 1]^dim, stds log-uniform in [std_low, std_high]."""
    rng = np.random.default_rng(spec.seed)
    stds = np.exp(rng.uniform(np.log(spec.std_low), np.log(spec.std_high), spec.n_modes))
    stds = np.sort(stds)[::-1]  # place the wide ones first: they need the most room
    for _ in range(1000):  # random sequential placement, started over when it jams
        means = _place(rng, stds, spec.dim)
        if means is not None:
            break
    else:
        raise RuntimeError(f"{spec.name}: no room for {spec.n_modes} components")
    weights = rng.uniform(*WEIGHT_RANGE, spec.n_modes)
    return GaussianMixture(means, stds.copy(), weights / weights.sum())


def _place(rng: np.random.Generator, stds: np.ndarray, dim: int) -> np.ndarray | None:
    means: list[np.ndarray] = []
    for s in stds:
        for _ in range(2000):
            mu = rng.uniform(0, 1, dim)
            if all(
                np.linalg.norm(mu - m) >= SEPARATION * (s + t)
                for m, t in zip(means, stds, strict=False)
            ):
                means.append(mu)
                break
        else:
            return None
    return np.array(means)


def in_units(mixture: GaussianMixture, units: str) -> GaussianMixture:
    """The mixture in the unit box ("user") or ×SCALE and shifted ("scaled")."""
    if units == "user":
        return mixture
    shift = torch.tensor(SHIFT[: mixture.dim], dtype=torch.float64)
    return GaussianMixture(mixture.means * SCALE + shift, mixture.stds * SCALE, mixture.weights)


def write_points(mixture: GaussianMixture, path: Path, seed: int) -> Path:
    """N_POINTS draws of the mixture as a float32 .npy file (numpy's generator, ``seed``)."""
    rng = np.random.default_rng(seed)
    k = rng.choice(mixture.n_modes, N_POINTS, p=mixture.weights.numpy())
    noise = rng.standard_normal((N_POINTS, mixture.dim))
    x = mixture.means.numpy()[k] + mixture.stds.numpy()[k, None] * noise
    np.save(path, x.astype(np.float32))
    return path


def reference(mixture: GaussianMixture, seeds: list[int]) -> dict:
    """The protocol on samples of P itself: what a faithful generator scores."""
    reports = [
        mode_report(mixture.sample(N_SAMPLES, torch.Generator().manual_seed(s)), mixture)
        for s in seeds
    ]
    return {
        "modes": [r.modes_captured for r in reports],
        "hq": [r.hq_fraction for r in reports],
        "kl": [r.reverse_kl for r in reports],
        "spread": [r.spread for r in reports],
    }


def train_and_score(path: Path, mixture: GaussianMixture, seed: int, overrides: list[str],
                    workdir: Path) -> dict:  # fmt: skip
    """`minmax train --data PATH` as a user runs it, then 2,500 samples of G_ema scored."""
    run_dir = workdir / f"{path.stem}-seed{seed}"
    argv = ["train", "--data", str(path), "--out", str(run_dir), "--quiet",
            f"train.seed={seed}", *overrides]  # fmt: skip
    printed = io.StringIO()
    start = time.monotonic()
    with contextlib.redirect_stdout(printed):
        code = minmax_main(argv)
    wall = time.monotonic() - start
    if code != 0:
        raise RuntimeError(f"minmax {' '.join(argv)} exited with {code}")
    fake = sample(load_generator(run_dir), N_SAMPLES, SAMPLE_SEED)
    report = mode_report(fake, mixture)
    return {"modes": report.modes_captured, "hq": report.hq_fraction, "kl": report.reverse_kl,
            "spread": report.spread, "wall": wall, "fake": fake}  # fmt: skip


def missed_targets(rows: dict, n_modes: int) -> list[str]:
    """The targets a dataset's seeds miss: [] when all are met."""
    checks = {
        "modes": min(rows["modes"]) == n_modes,
        "HQ mean": statistics.mean(rows["hq"]) >= TARGET_HQ_MEAN,
        "HQ worst": min(rows["hq"]) >= TARGET_HQ_WORST,
        "rev-KL": max(rows["kl"]) <= TARGET_KL,
        "wall": max(rows["wall"]) <= TARGET_WALL,
    }
    return [name for name, ok in checks.items() if not ok]


def _row(label: str, rows: dict, n_modes: int) -> str:
    walls = rows.get("wall")
    wall = f"{statistics.mean(walls):5.1f} / {max(walls):5.1f} s" if walls else "—"
    return (
        f"| {label} | {statistics.mean(rows['modes']):.1f} / {min(rows['modes'])} of {n_modes} "
        f"| {100 * statistics.mean(rows['hq']):.2f}% / {100 * min(rows['hq']):.2f}% "
        f"| {statistics.mean(rows['kl']):.4f} / {max(rows['kl']):.4f} "
        f"| {statistics.mean(rows['spread']):.3f} | {wall} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=[d.name for d in DATASETS])
    parser.add_argument("--units", nargs="+", default=["user", "scaled"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--workdir", help="keep points files and runs here (default: temporary)")
    parser.add_argument("overrides", nargs="*", help="key=value on top of the defaults")
    args = parser.parse_args()
    specs = {d.name: d for d in DATASETS}
    unknown = sorted(set(args.datasets) - set(specs))
    if unknown:
        parser.error(f"unknown datasets {unknown}: choose from {sorted(specs)}")
    print(f"# {machine_summary()}")
    print(f"# {date.today()}")
    print(f"# python benchmarks/points.py {' '.join(sys.argv[1:])}")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    all_ok = True
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for name in args.datasets:
            spec = specs[name]
            base = build_mixture(spec)
            kind = "tuned on" if spec.tuned else "held out"
            print(f"\n## {name}: {spec.n_modes} components in {spec.dim}-D, stds "
                  f"{float(base.stds.min()):.3f}-{float(base.stds.max()):.3f} of the box, "
                  f"weights {float(base.weights.min()):.3f}-{float(base.weights.max()):.3f} "
                  f"({kind})")  # fmt: skip
            print("| | modes (mean / worst) | HQ (mean / worst) | rev-KL (mean / worst) "
                  "| spread | wall (mean / max) |\n|---|---|---|---|---|---|")  # fmt: skip
            print(_row("samples of P itself", reference(base, seeds), spec.n_modes), flush=True)
            samples: dict[str, list] = {}
            for units in args.units:
                mixture = in_units(base, units)
                path = write_points(mixture, workdir / f"{name}-{units}.npy", spec.seed)
                rows: dict[str, list] = {}
                for seed in seeds:
                    result = train_and_score(path, mixture, seed, args.overrides, workdir)
                    samples.setdefault(units, []).append(result.pop("fake"))
                    for key, value in result.items():
                        rows.setdefault(key, []).append(value)
                    print(f"  {name} {units} seed {seed}: modes {result['modes']}/"
                          f"{spec.n_modes}  HQ {100 * result['hq']:.2f}%  rev-KL "
                          f"{result['kl']:.4f}  spread {result['spread']:.3f}  wall "
                          f"{result['wall']:.1f} s", file=sys.stderr, flush=True)  # fmt: skip
                missed = missed_targets(rows, spec.n_modes)
                all_ok &= not missed
                verdict = f"missed: {', '.join(missed)}" if missed else "targets met"
                label = f"{units} units, {len(seeds)} seeds ({verdict})"
                print(_row(label, rows, spec.n_modes), flush=True)
            if {"user", "scaled"} <= samples.keys():
                print(f"scaled vs user samples of the same z, mapped back to the box: "
                      f"{_agreement(samples['user'], samples['scaled'], spec.dim)}")  # fmt: skip
    return 0 if all_ok else 1


def _agreement(user: list, scaled: list, dim: int) -> str:
    """How far the scaled runs' samples (same z, mapped back to the box) are from the user runs'.

    Identical networks would give differences of float rounding (~1e-6); the two files differ
    by the rounding of their float32 values, which a run amplifies like any perturbation.
    """
    shift = torch.tensor(SHIFT[:dim])
    gaps = [((s - shift) / SCALE - u).norm(dim=1) for u, s in zip(user, scaled, strict=True)]
    medians = ", ".join(f"{float(g.median()):.2g}" for g in gaps)
    return f"median distance per seed {medians} (of a unit box; 0 would be identical runs)"


if __name__ == "__main__":
    sys.exit(main())
