"""PacGAN's 2-D ring and grid protocol: modes, % high-quality, reverse KL over seeds.

Usage: python benchmarks/toy.py [--presets ring grid] [--seeds 10] [key=value ...]
Each run is a full `minmax train` (training + final report) timed from start to finish.
Targets (issue 2): ring 8/8 modes, >= 99% HQ, rev-KL <= 0.02 in every seed; grid 25/25,
>= 98% HQ, rev-KL <= 0.02 in every seed; each run <= 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from minmax.config import resolve
from minmax.data import resolve_toy
from minmax.machine import machine_summary
from minmax.metrics import mode_report
from minmax.train.loop import train

TARGETS = {"ring": (8, 0.99, 0.02), "grid": (25, 0.98, 0.02)}


def reference(preset: str, first_seed: int, seeds: int) -> None:
    """The same protocol on samples of P itself: the ceiling a faithful generator reaches.

    In 2-D a Gaussian puts 1 - exp(-9/2) = 98.89% of its mass within 3 std, so the HQ share
    of a perfect generator scatters around 98.89% on 2,500 samples.
    """
    cfg = resolve(preset)
    source = resolve_toy(cfg.data.name)
    reports = [
        mode_report(source.sample(cfg.eval.n_samples, torch.Generator().manual_seed(s)), source)
        for s in range(first_seed, first_seed + seeds)
    ]
    hq = [r.hq_fraction for r in reports]
    kl = [r.reverse_kl for r in reports]
    spread = statistics.mean(r.spread for r in reports)
    print(
        f"{preset} reference, {seeds} draws of {cfg.eval.n_samples} samples of P itself: "
        f"modes worst {min(r.modes_captured for r in reports)}/{reports[0].n_modes} | "
        f"HQ mean {100 * statistics.mean(hq):.2f}% worst {100 * min(hq):.2f}% | "
        f"rev-KL mean {statistics.mean(kl):.4f} worst {max(kl):.4f} | spread mean {spread:.3f}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["ring", "grid"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    print(
        f"# {date.today()}  {platform.processor() or platform.machine()}  "
        f"cores={torch.get_num_threads()}  torch {torch.__version__}  "
        f"python {platform.python_version()}"
    )
    print(f"# {machine_summary()}")
    print(f"# overrides: {' '.join(args.overrides) or '(none)'}")
    all_ok = True
    for preset in args.presets:
        reference(preset, args.first_seed, args.seeds)
        rows = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            cfg = resolve(preset, overrides=[*args.overrides, f"train.seed={seed}"])
            with tempfile.TemporaryDirectory() as tmp:
                start = time.monotonic()
                summary = train(cfg, Path(tmp) / "run", progress=False)
                wall = time.monotonic() - start
            rows.append((seed, summary, wall))
            print(
                f"{preset} seed {seed}: modes {summary['modes_captured']}/{summary['n_modes']}"
                f"  HQ {100 * summary['hq_fraction']:.2f}%  rev-KL {summary['reverse_kl']:.4f}"
                f"  spread {summary['spread']:.3f}  kimg {summary['kimg']:.0f}  wall {wall:.1f} s",
                flush=True,
            )
        modes = [s["modes_captured"] for _, s, _ in rows]
        hq = [s["hq_fraction"] for _, s, _ in rows]
        kl = [s["reverse_kl"] for _, s, _ in rows]
        walls = [w for _, _, w in rows]
        spread = statistics.mean(s["spread"] for _, s, _ in rows)
        n_modes, hq_min, kl_max = TARGETS.get(preset, (rows[0][1]["n_modes"], 0.0, float("inf")))
        ok = min(modes) >= n_modes and min(hq) >= hq_min and max(kl) <= kl_max
        ok = ok and max(walls) <= 60
        all_ok &= ok
        print(
            f"{preset} over {len(rows)} seeds: modes mean {statistics.mean(modes):.2f} "
            f"worst {min(modes)}/{n_modes} | HQ mean {100 * statistics.mean(hq):.2f}% "
            f"worst {100 * min(hq):.2f}% | rev-KL mean {statistics.mean(kl):.4f} "
            f"worst {max(kl):.4f} | spread mean {spread:.3f} | "
            f"wall mean {statistics.mean(walls):.1f} s max {max(walls):.1f} s | "
            f"target {'met' if ok else 'NOT met'}",
            flush=True,
        )
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
