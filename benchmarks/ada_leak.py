"""Does ADA leak? A G trained with augment.ada at a fixed p = 0.5 must not make rotated digits.

    python benchmarks/ada_leak.py --minutes 5                # p = 0.5, the default ops
    python benchmarks/ada_leak.py --minutes 5 --control      # also a G that must leak

Trains unconditional mnist-dcgan on ../shared/data/mnist.npz for ``--minutes`` with
``augment.ada=true augment.ada_fixed_p=P`` (p held, not adapted), samples 10,000 digits from
G_ema, and asks the digits network (``minmax features train --data ../shared/data/mnist.npz``
first) which way up each digit is: an image "looks rotated" when the network is more confident
on one of its 90°, 180° or 270° rotations than on the image as it is (counted among the
digits it reads with softmax ≥ 0.9 in some orientation). The MNIST test set gives
the rate for real, upright digits (0, 1, 8 and 6/9 look fine either way up), but a short
run's imperfect digits read best turned far more often (58% with no augmentation after 4
minutes, 2026-12-07), so the reference is a G trained the same way without augmentation: a G
that leaks the rotations has a higher rate. ``--control`` also trains a G whose D sees only
rot90 at p = 1, which must leak (every quarter turn equally likely): the check's
sensitivity. Prints one JSON line per G and a verdict: leaked when the rate exceeds the
unaugmented G's by more than ``--margin``. Look at the runs' grids too (``--out``): mirrored
digits (x-flip leaking) are visible there but barely move this rotation score.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist.npz"


def rotated_rate(
    net: torch.nn.Module, x: torch.Tensor, sure: float = 0.9, batch: int = 1000
) -> tuple[float, float]:
    """Among (n, 1, 28, 28) images in [-1, 1] that the network reads as a digit (softmax
    ≥ ``sure``) in some quarter turn, the fraction it reads best turned rather than as they
    are; and that recognised fraction. Unreadable samples (an undertrained G) are left out:
    noise looks "rotated" three times in four and would hide what G learned."""
    rotated = recognised = 0
    with torch.no_grad():
        for chunk in x.split(batch):
            confidence = torch.stack(
                [net(torch.rot90(chunk, k, dims=(2, 3)))[1].softmax(1).amax(1) for k in range(4)]
            )
            best, turn = confidence.max(0)
            readable = best >= sure
            recognised += int(readable.sum())
            rotated += int((readable & (turn > 0)).sum())
    return rotated / max(recognised, 1), recognised / len(x)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """G's output as the uint8 digits it would be saved as, back in [-1, 1]."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def train_one(name: str, overrides: list[str], minutes: float, out: Path) -> Path:
    from minmax.config import resolve
    from minmax.train.loop import train

    run_dir = out / name
    cfg = resolve(
        "mnist-dcgan",
        overrides=[
            f"data.name={MNIST}",
            "model.conditional=false",
            "train.kimg=100000",
            f"train.max_minutes={minutes}",
            "eval.plots=false",
            *overrides,
        ],
    )
    train(cfg, run_dir, progress=False)
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training time per G")
    parser.add_argument("--p", type=float, default=0.5, help="the fixed augmentation probability")
    parser.add_argument("--control", action="store_true", help="also train a G that must leak")
    parser.add_argument("--margin", type=float, default=0.05, help="allowed excess rotated rate")
    parser.add_argument("--n", type=int, default=10_000, help="generated digits per G")
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temp dir)")
    args = parser.parse_args()

    from minmax.metrics.features.digits import default_digits_path, load_feature_net
    from minmax.sample import generate, load_generator

    net, _ = load_feature_net(default_digits_path("mnist"))
    net.eval()
    with np.load(MNIST) as f:
        test = torch.from_numpy(f["x_test"]).float()[:, None] / 127.5 - 1
    reference, _ = rotated_rate(net, test)
    print(json.dumps({"G": "mnist test set", "rotated_rate": round(reference, 4)}))

    runs = {
        "no augmentation": [],  # the reference: how often this G's digits read best turned
        f"ada p={args.p}": ["augment.ada=true", f"augment.ada_fixed_p={args.p}"],
    }
    if args.control:
        runs["control: rot90 at p=1"] = [
            "augment.ada=true", "augment.ada_fixed_p=1", "augment.ada_ops=rot90",
        ]  # fmt: skip
    baseline = None
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out) if args.out else Path(scratch)
        for i, (name, overrides) in enumerate(runs.items()):
            start = time.monotonic()
            run_dir = train_one(f"g{i}", overrides, args.minutes, out)
            x, _ = generate(load_generator(run_dir), args.n, seed=0)
            rate, readable = rotated_rate(net, quantize(x))
            baseline = rate if baseline is None else baseline
            verdict = "leaked" if rate > baseline + args.margin else "no leak"
            line = {
                "G": name,
                "rotated_rate": round(rate, 4),
                "unaugmented_rate": round(baseline, 4),
                "readable": round(readable, 4),
                "verdict": verdict,
                "minutes": round((time.monotonic() - start) / 60, 2),
                "date": time.strftime("%Y-%m-%d"),
            }
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
