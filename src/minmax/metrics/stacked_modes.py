"""Stacked MNIST mode coverage, by the VEEGAN / PacGAN protocol.

A digit classifier (the digits feature net, trained on MNIST by ``minmax features train``)
labels each channel of N generated 3-channel images by its argmax class, as the class census
does; image i's mode is ``100·d0 + 10·d1 + d2``. Reported: the modes covered (at least one
sample, of 1,000), and

    KL(p ‖ uniform) = sum_k p_k log(p_k / (1/1000)) = log 1000 − H(p)   (nats),

p = counts / N, zero counts contributing 0. The protocol draws N = 26,000 (Srivastava et al.
2017 Sec. 5.2; Lin et al. 2018). Sampling alone costs a perfect generator KL ≈ (K − 1)/(2N)
= 0.019 at N = 26,000 (the expectation of the multinomial's plug-in KL), plus what the
classifier gets wrong.

Images must be 3-channel 28×28, or 32×32 (the digits net resizes each channel to 28×28).
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from minmax.errors import UsageError
from minmax.metrics.features import FeatureExtractor, as_uint8_images

N_MODES = 1000
SIDES = (28, 32)  # 28: MNIST's own; 32: the padded/resized variant, resized back to 28
RULE = "mode 100·d0 + 10·d1 + d2 from the digits net's argmax on each channel; covered: >= 1"


def check_stacked_images(images: Tensor | np.ndarray) -> Tensor:
    """uint8 (N, 3, 28, 28) or (N, 3, 32, 32), else a one-line UsageError."""
    images = as_uint8_images(images)
    _, c, h, w = images.shape
    if c != 3 or h != w or h not in SIDES:
        raise UsageError(
            f"the stacked-MNIST mode metric takes 3-channel 28x28 (or 32x32) images, a digit "
            f"per channel; got {c}x{h}x{w}: train on data.name=stacked-mnist"
        )
    return images


def check_digit_classifier(extractor: FeatureExtractor) -> None:
    """The mode metric needs a 10-class, 1-channel classifier: the digits net."""
    if extractor.num_classes != 10 or extractor.channels != 1:
        raise UsageError(
            f"the stacked-MNIST mode metric needs the digits classifier (10 classes, 1 channel), "
            f"not '{extractor.name}': use --features digits (eval.features=digits)"
        )


def channel_digits(images: Tensor | np.ndarray, extractor: FeatureExtractor) -> np.ndarray:
    """(N, 3) int64: the classifier's argmax digit on each channel of each image."""
    images = check_stacked_images(images)
    check_digit_classifier(extractor)
    n, _, h, w = images.shape
    probs = extractor.probs(images.reshape(n * 3, 1, h, w))
    return probs.argmax(axis=1).reshape(n, 3).astype(np.int64)


def kl_to_uniform(counts: np.ndarray) -> float:
    """KL(counts / sum ‖ uniform over len(counts)) in nats; 0 log 0 = 0."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("kl_to_uniform needs at least one count")
    p = counts[counts > 0] / total
    return float((p * (np.log(p) + math.log(len(counts)))).sum())


def stacked_modes(digits: np.ndarray | Tensor) -> dict:
    """Mode statistics of (N, 3) channel digits in 0..9.

    Returns ``{"n_samples", "n_modes", "modes_covered", "kl_to_uniform", "channel_kl",
    "counts", "rule"}``: plain JSON-ready values; ``counts`` has one entry per mode (1,000);
    ``channel_kl`` is each channel's digit shares' KL to uniform over 10. The KL splits as
    their sum plus the channels' dependence (total correlation): it tells a G that writes
    some digits too often from one that combines them unevenly.
    """
    digits = np.asarray(digits, dtype=np.int64)
    if digits.ndim != 2 or digits.shape[1] != 3 or len(digits) == 0:
        raise ValueError(f"digits must have shape (N, 3) with N >= 1, got {digits.shape}")
    if digits.min() < 0 or digits.max() > 9:
        raise ValueError("digits must be in 0..9")
    modes = digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]
    counts = np.bincount(modes, minlength=N_MODES)
    return {
        "n_samples": int(len(digits)),
        "n_modes": N_MODES,
        "modes_covered": int((counts > 0).sum()),
        "kl_to_uniform": kl_to_uniform(counts),
        "channel_kl": [kl_to_uniform(np.bincount(digits[:, c], minlength=10)) for c in range(3)],
        "counts": [int(c) for c in counts],
        "rule": RULE,
    }


def stacked_mode_report(images: Tensor | np.ndarray, extractor: FeatureExtractor) -> dict:
    """``stacked_modes`` of the images' channels as the digits classifier reads them."""
    return stacked_modes(channel_digits(images, extractor))
