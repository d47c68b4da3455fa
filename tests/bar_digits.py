"""Tiny labelled 28×28 'digits' for image tests: a bright bar whose position is the class."""

import numpy as np


def bar_digits(n: int, n_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images on dim noise, class ``i % n_classes`` a bar at row 4 + 8·class;
    int64 labels. Draws from ``rng``, so consecutive calls give different images."""
    y = np.arange(n) % n_classes
    x = rng.integers(0, 40, size=(n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(y):
        x[i, 4 + 8 * label : 10 + 8 * label, 6:22] = 250
    return x, y.astype(np.int64)
