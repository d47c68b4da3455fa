"""Stacked MNIST: the dataset's cost, and the mode metric on real and collapsed stacked images.

    nice -n 19 python benchmarks/stacked_mnist.py [--data-root ../shared/data] [--n 26000]

Builds ``stacked-mnist`` (128,000 images) from MNIST, timing it and its memory, then scores
with the digits feature net (``minmax features train --data ../shared/data/mnist.npz`` first):

- real: the first N training images (the protocol's N = 26,000). A perfect generator would
  score 1,000 modes and KL ≈ (K − 1)/(2N) = 0.019 from sampling alone; the set also inherits
  MNIST's unequal digit frequencies (digit 1 is 11.2% of the training set, 5 is 9.0%),
  printed as the KL of its own labels, and the classifier's errors add the rest.
- collapsed: N images drawn from only 10 distinct triples (expect 10 modes, KL = log 100
  = 4.605), and from the 500 modes whose first digit is 0..4 (expect 500 modes, KL ≈ log 2).
"""

from __future__ import annotations

import argparse
import datetime
import math
import resource
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from minmax.data.images import load_images
from minmax.machine import machine_summary
from minmax.metrics.features.digits import default_digits_path, load_digits
from minmax.metrics.stacked_modes import channel_digits, stacked_modes

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def line(what: str, report: dict, seconds: float | None = None) -> str:
    took = f" ({seconds:.1f} s)" if seconds is not None else ""
    return (f"{what:<44} {report['modes_covered']:>4}/1000 modes  "
            f"KL {report['kl_to_uniform']:.4f} nats{took}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--n", type=int, default=26_000)
    args = parser.parse_args()
    print(f"{datetime.date.today()}  {machine_summary()}")
    print("command:", shlex.join(["python", *sys.argv]))

    # Build.
    before = rss_mb()
    start = time.perf_counter()
    data = load_images("stacked-mnist", root=args.data_root, download=False)
    print(f"build: {data!r} in {time.perf_counter() - start:.2f} s, peak RSS "
          f"{before:.0f} -> {rss_mb():.0f} MB (composed it would be "
          f"{len(data) * 3 * 28 * 28 / 1e6:.0f} MB)")  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(100):
        data.sample(64, gen)
    print(f"sample: a batch of 64 in {(time.perf_counter() - start) * 10:.2f} ms")

    # The real set, by its labels and by the classifier.
    n = args.n
    rows = torch.arange(n)
    images, labels = data.compose(rows), data.labels[:n]
    truth = torch.stack([labels // 100, labels // 10 % 10, labels % 10], dim=1).numpy()
    population = np.bincount(data.labels.numpy(), minlength=1000) / len(data)
    kl_population = float((population * np.log(population * 1000)).sum())
    print(
        f"expected from sampling alone, (K-1)/(2N) at N={n}: {999 / (2 * n):.4f} nats; "
        f"the 128,000 images' own label distribution: KL {kl_population:.4f} nats"
    )
    print(line(f"real, first {n:,}, true labels", stacked_modes(truth)))
    extractor = load_digits(default_digits_path())
    start = time.perf_counter()
    predicted = channel_digits(images, extractor)
    seconds = time.perf_counter() - start
    report = stacked_modes(predicted)
    print(line(f"real, first {n:,}, digits net", report, seconds))
    correct = predicted == truth
    print(f"  digits net {extractor.weights_sha256[:12]}…: channels right {correct.mean():.4%}, "
          f"images with all three right {correct.all(axis=1).mean():.4%}; "
          f"counts per mode {min(report['counts'])}..{max(report['counts'])}")  # fmt: skip

    # Collapsed sets.
    first = {}
    for i, mode in enumerate(data.labels.tolist()):
        first.setdefault(mode, i)
        if len(first) == 10:
            break
    ten = torch.tensor(list(first.values())).repeat(math.ceil(n / 10))[:n]
    print(line("collapsed: 10 distinct triples", stacked_modes(channel_digits(
        data.compose(ten), extractor))))  # fmt: skip
    half = torch.nonzero(data.labels < 500).flatten()[:n]
    half_truth = torch.stack([data.labels[half] // 100, data.labels[half] // 10 % 10,
                              data.labels[half] % 10], dim=1)  # fmt: skip
    print(line("collapsed: first digit 0..4, true labels", stacked_modes(half_truth)))
    print(line(f"collapsed: first digit 0..4 ({len(half):,} images)", stacked_modes(
        channel_digits(data.compose(half), extractor))))  # fmt: skip
    print(f"peak RSS {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
