"""Which parts of the modern recipe pay on a CPU (issue 18): loss, regularisation, schedules and
architecture, each measured on unconditional MNIST or Stacked MNIST in a fixed wall time.

    python benchmarks/recipes.py --data mnist --minutes 3 --arms ns ns-r1r2 rpgan-r1r2 rpgan-burnin
    python benchmarks/recipes.py --data stacked-mnist --minutes 3 --arms ns rpgan-r1r2
    python benchmarks/recipes.py --data stacked-mnist --preset stacked-mnist --minutes 20 \
        --arms preset --seeds 0 1 2

Each run is ``minmax train --preset P --data D train.max_minutes=M train.seed=S
model.conditional=false [arm's overrides]``; then 10,000 (MNIST) or 26,000 (Stacked MNIST)
G_ema samples are scored with the digits feature net (``minmax features train --data
../shared/data/mnist.npz`` first):

- MNIST: fd10k_digits against the test set, and the KL from the test set's class shares to the
  samples' (the digits net's argmax).
- Stacked MNIST: the modes covered of 1,000 and KL to uniform (``modes26k_digits``), and the
  generated channels' fd10k_digits: the first 10,000 single-channel digits (each sample's three
  channels in turn) against MNIST's test digits.

One JSON line per run, then a table. The runs are wall-time races: run with nothing else on the
machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from minmax.images import to_uint8
from minmax.machine import machine_summary
from minmax.metrics.features.digits import default_digits_path, load_digits
from minmax.metrics.frechet import frechet_distance_features
from minmax.metrics.stacked_modes import channel_digits, stacked_modes
from minmax.sample import generate, load_generator

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT.parent / "shared" / "data"
R1R2 = ["loss.r1_gamma=0.1", "loss.r2_gamma=0.1", "loss.reg_every=1"]
# The paper's burn-in (Huang et al. 2024): lr 4x, beta2 0.9 -> 0.99, EMA half-life 0 -> 50
# kimg and gamma 10x, each by a half cosine over the first 100 kimg.
BURNIN = ["train.burnin_kimg=100", "train.lr_start_factor=4", "train.beta2_start=0.9",
          "train.ema_half_life_kimg=50", "train.ema_half_life_start_factor=0",
          "train.gamma_start_factor=10"]  # fmt: skip
ARMS = {
    "preset": [],
    "ns": ["loss.objective=nonsaturating"],
    "ns-r1r2": ["loss.objective=nonsaturating", *R1R2],
    "rpgan": ["loss.objective=rpgan", "train.beta1=0"],
    "rpgan-r1r2": ["loss.objective=rpgan", "train.beta1=0", *R1R2],
    "rpgan-burnin": ["loss.objective=rpgan", "train.beta1=0", *R1R2, *BURNIN],
    # the burn-in's parts, one at a time, and the burn-in without the loss and R1 + R2
    "rpgan-lr": ["loss.objective=rpgan", "train.beta1=0", *R1R2, *BURNIN[:2]],
    "rpgan-gamma": ["loss.objective=rpgan", "train.beta1=0", *R1R2, BURNIN[0], BURNIN[5]],
    "rpgan-ema": ["loss.objective=rpgan", "train.beta1=0", *R1R2, BURNIN[0], *BURNIN[3:5]],
    "ns-burnin": ["loss.objective=nonsaturating", *BURNIN[:5]],
    "r3gan": [
        "model.arch=r3gan",
        "loss.objective=rpgan",
        "train.beta1=0",
        *R1R2,
        *BURNIN,
        "model.g_channels=8",
        "model.d_channels=8",
        "model.blocks_per_stage=1",
        "model.max_width_factor=4",
    ],  # fmt: skip
}


def train(args: argparse.Namespace, arm: str, seed: int) -> Path:
    out = Path(args.out) / f"{args.data}-{arm}-seed{seed}"
    cmd = ["minmax", "train", "--preset", args.preset, "--quiet", "--data", args.data,
           "--out", str(out), f"data.root={args.data_root}", f"train.max_minutes={args.minutes}",
           f"train.seed={seed}", "model.conditional=false", "eval.plots=false",
           *ARMS[arm], *args.set]  # fmt: skip
    print("$", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return out


def fd(extractor, reference: np.ndarray, images: torch.Tensor) -> tuple[float, np.ndarray]:
    """The Fréchet distance of ``images``' digits-net features to ``reference``'s, and their
    class probabilities."""
    features, probs = extractor.run(images)
    return frechet_distance_features(reference, features), probs


def score(run: Path, data: str, extractor, reference: np.ndarray, test_shares: np.ndarray) -> dict:
    G = load_generator(run, "G_ema")
    final = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in final if r.get("kind") == "final"][-1]
    record = {"run": str(run), "kimg": round(final["kimg"], 1), "seconds": final["seconds"]}
    if data == "stacked-mnist":
        pixels = to_uint8(generate(G, 26_000, seed=0)[0])
        modes = stacked_modes(channel_digits(pixels, extractor))
        channels = pixels[:3334].reshape(-1, 1, *pixels.shape[2:])[:10_000]
        value, _ = fd(extractor, reference, channels)
        record |= {"modes": modes["modes_covered"], "kl_uniform": modes["kl_to_uniform"],
                   "channel_kl": [round(kl, 4) for kl in modes["channel_kl"]],
                   "fd10k_digits_channels": value}  # fmt: skip
    else:
        value, probs = fd(extractor, reference, to_uint8(generate(G, 10_000, seed=0)[0]))
        shares = np.bincount(probs.argmax(1), minlength=10) / len(probs)
        kl = float((test_shares * np.log(test_shares / np.maximum(shares, 1e-12))).sum())
        record |= {"fd10k_digits": value, "kl_classes": kl, "shares": shares.round(3).tolist()}
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["mnist", "stacked-mnist"], default="mnist")
    parser.add_argument("--preset", default="mnist-dcgan")
    parser.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=["preset"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--out", default="/tmp/minmax-recipes")
    parser.add_argument("--data-root", default=str(DATA_ROOT))
    parser.add_argument("--set", nargs="*", default=[], help="extra key=value for every run")
    args = parser.parse_args()
    print(f"{datetime.date.today()}  {machine_summary()}")
    print("command:", shlex.join(["python", *sys.argv]), flush=True)

    extractor = load_digits(default_digits_path())
    with np.load(Path(args.data_root) / "mnist.npz", allow_pickle=False) as f:
        test, test_labels = f["x_test"], f["y_test"]
    reference = extractor.run(torch.from_numpy(test).unsqueeze(1))[0]
    test_shares = np.bincount(test_labels, minlength=10) / len(test_labels)
    records = []
    for arm in args.arms:
        for seed in args.seeds:
            record = {"arm": arm, "seed": seed} | score(
                train(args, arm, seed), args.data, extractor, reference, test_shares
            )
            print(json.dumps(record), flush=True)
            records.append(record)

    print(f"\n{args.data}, {args.minutes:g} minutes, preset {args.preset}, unconditional")
    if args.data == "stacked-mnist":
        print(f"{'arm':<14} {'seed':>4} {'kimg':>7} {'modes':>6} {'KL':>7} {'fd chan':>8}")
        for r in records:
            print(f"{r['arm']:<14} {r['seed']:>4} {r['kimg']:>7.1f} {r['modes']:>6} "
                  f"{r['kl_uniform']:>7.4f} {r['fd10k_digits_channels']:>8.1f}")  # fmt: skip
    else:
        print(f"{'arm':<14} {'seed':>4} {'kimg':>7} {'fd10k_digits':>12} {'KL classes':>10}")
        for r in records:
            print(f"{r['arm']:<14} {r['seed']:>4} {r['kimg']:>7.1f} {r['fd10k_digits']:>12.1f} "
                  f"{r['kl_classes']:>10.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
