"""Stacked MNIST: built from a small synthetic Keras-layout mnist.npz (never the real file)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from minmax.config import DataConfig
from minmax.data.images import ImageDataset, is_image_dataset, load_images, resize_images
from minmax.data.sources import ImageSource, resolve_data
from minmax.data.stacked_mnist import (
    N_IMAGES,
    StackedImages,
    draw_triples,
    mode_index,
    splitmix64,
)
from minmax.errors import UsageError
from minmax.train.fingerprint import data_fingerprint

N_TRAIN, N_TEST = 500, 100


def digit_images(n: int, labels: np.ndarray) -> np.ndarray:
    """Digit i carries its index in pixels (0, 0) and (0, 1) and its label in row 1."""
    images = np.zeros((n, 28, 28), np.uint8)
    index = np.arange(n)
    images[:, 0, 0], images[:, 0, 1] = index // 256, index % 256
    images[:, 1, :] = (20 * labels)[:, None]
    return images


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist-root")
    rng = np.random.default_rng(0)
    y_train = rng.integers(0, 10, N_TRAIN).astype(np.uint8)
    y_test = rng.integers(0, 10, N_TEST).astype(np.uint8)
    np.savez(folder / "mnist.npz", x_train=digit_images(N_TRAIN, y_train), y_train=y_train,
             x_test=digit_images(N_TEST, y_test), y_test=y_test)  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def train(root) -> StackedImages:
    return load_images("stacked-mnist", root=str(root), download=False)


def decode(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, 28, 28) -> the digit index and the label in each channel, (N, 3) each."""
    index = images[:, :, 0, 0].long() * 256 + images[:, :, 0, 1].long()
    return index, images[:, :, 1, 0].long() // 20


def test_shapes_dtypes_and_names(train):
    assert is_image_dataset("stacked-mnist")
    assert len(train) == N_IMAGES["train"] == 128_000 and train.shape == (3, 28, 28)
    assert train.labels.dtype == torch.int64 and train.labels.shape == (128_000,)
    assert train.n_classes == 1000 and train.class_names[123] == "123"
    x, y = train.sample(16, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32 and x.shape == (16, 3, 28, 28)
    assert x.min() >= -1 and x.max() <= 1 and y.dtype == torch.int64


def test_each_channel_is_a_digit_and_the_label_is_the_mode(train, root):
    labels = np.load(root / "mnist.npz")["y_train"].astype(np.int64)
    rows = torch.arange(0, 128_000, 97)
    index, digit = decode(train.compose(rows))
    assert torch.equal(index, train.triples[rows])
    assert torch.equal(digit, torch.from_numpy(labels)[index])
    assert torch.equal(train.labels[rows], digit[:, 0] * 100 + digit[:, 1] * 10 + digit[:, 2])
    assert torch.equal(mode_index(torch.tensor([[1, 2, 3], [9, 0, 0]])), torch.tensor([123, 900]))


def test_the_same_images_every_time_and_in_another_process(train, root):
    again = load_images("stacked-mnist", root=str(root), download=False)
    assert torch.equal(again.triples, train.triples) and torch.equal(again.labels, train.labels)
    # The stream is pinned: SplitMix64's reference first output for seed 0, and our first draws.
    assert int(splitmix64(0, 1)[0]) == 0xE220A8397B1DCDAF
    assert draw_triples(2, 60_000, 0).tolist() == [[27535, 35700, 45679], [22444, 34747, 42090]]
    code = ("from minmax.data.stacked_mnist import draw_triples; "
            "print(draw_triples(128000, 500, 0).sum(0).tolist())")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(train.triples.sum(0).tolist())


def test_the_three_channels_are_independent_uniform_draws():
    # Digits drawn straight from 10 "images": the triple is uniform over 1,000 cells.
    triples = draw_triples(30_000, 10, seed=0)
    counts = torch.bincount(mode_index(triples), minlength=1000).double()
    expected = len(triples) / 1000
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert abs(chi2 - 999) < 5 * (2 * 999) ** 0.5  # chi-square, 999 degrees of freedom
    for c in range(3):  # each channel alone: uniform over 10
        per_digit = torch.bincount(triples[:, c], minlength=10).double()
        assert float(((per_digit - 3000) ** 2 / 3000).sum()) < 30  # chi2(9) at p ~ 4e-4


def test_sampling_matches_a_materialised_copy(train):
    index = torch.arange(0, 128_000, 1000)
    small = StackedImages(train.digits, train.triples[index], train.labels[index], 1000)
    whole = ImageDataset(small.images, small.labels, 1000, "copy")
    for rows in (None, slice(1, 5)):
        got = small.sample(8, torch.Generator().manual_seed(3), rows)
        want = whole.sample(8, torch.Generator().manual_seed(3), rows)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_options_and_the_test_split(train, root):
    bare = load_images("stacked-mnist", root=str(root), download=False, labels=False)
    assert bare.labels is None and bare.n_classes == 0
    assert torch.equal(bare.triples, train.triples)
    big = load_images("stacked-mnist", root=str(root), download=False, resolution=32)
    assert big.shape == (3, 32, 32)  # resizing digits, then stacking = resizing stacked images
    assert torch.equal(
        big.compose(torch.arange(4)), resize_images(train.compose(torch.arange(4)), 32)
    )
    assert load_images("stacked-mnist", root=str(root), download=False, channels=3).shape[0] == 3
    with pytest.raises(UsageError, match="3-channel by construction"):
        load_images("stacked-mnist", root=str(root), download=False, channels=1)
    test = load_images("stacked-mnist", root=str(root), split="test", download=False)
    assert len(test) == 10_000 and int(decode(test.compose(torch.arange(500)))[0].max()) < N_TEST


def test_without_mnist_the_error_is_mnists(tmp_path):
    messages = []
    for name in ("mnist", "stacked-mnist"):
        with pytest.raises(UsageError) as info:
            load_images(name, root=str(tmp_path), download=False)
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "mnist train files not found" in messages[0]


def test_a_training_source_and_its_fingerprint(root, train):
    source = resolve_data(DataConfig(name="stacked-mnist", root=str(root), download=False))
    assert isinstance(source, ImageSource) and source.shape == (3, 28, 28)
    assert source.n_classes == 1000 and abs(float(source.class_freq.sum()) - 1) < 1e-12
    found = data_fingerprint(source)
    assert found["shape"] == [3, 28, 28] and found == data_fingerprint(ImageSource(train))
