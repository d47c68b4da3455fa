"""Image datasets: the in-memory dataset, array transforms, the dispatcher and .npz images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from minmax.data import download
from minmax.data.images import (
    IMAGE_DATASETS,
    ImageDataset,
    convert_channels,
    is_image_dataset,
    load_images,
    resize_images,
)
from minmax.errors import UsageError

SHARED_MNIST = Path("/work/shared/data/mnist.npz")


@pytest.fixture(autouse=True)
def offline_cache(tmp_path, monkeypatch):
    """A private cache folder, and no network: only file:// URLs may be opened."""
    monkeypatch.setenv("MINMAX_CACHE", str(tmp_path / "cache-root"))
    real = download.urlopen

    def file_only(url, *args, **kwargs):
        if not str(url).startswith("file:"):
            raise OSError(f"tests are offline: refused {url}")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(download, "urlopen", file_only)


def usage_error(*args, **kwargs) -> str:
    with pytest.raises(UsageError) as info:
        load_images(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "the CLI prints one line"
    return message


def random_images(n=6, h=5, w=7, c=None, seed=0) -> np.ndarray:
    shape = (n, h, w) if c is None else (n, h, w, c)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ImageDataset


def make_dataset(n=8, labelled=True) -> ImageDataset:
    images = torch.arange(n * 3 * 2 * 2, dtype=torch.int64).remainder(256).to(torch.uint8)
    labels = torch.arange(n) % 3 if labelled else None
    names = ["a", "b", "c"] if labelled else []
    return ImageDataset(images.view(n, 3, 2, 2), labels, len(names), "toy", names)


def test_dataset_shape_len_repr():
    dataset = make_dataset()
    assert dataset.shape == (3, 2, 2) and len(dataset) == 8
    assert repr(dataset) == "ImageDataset('toy', n=8, shape=(3, 2, 2), n_classes=3)"


@pytest.mark.parametrize(
    "images, labels",
    [
        (torch.zeros(2, 3, 4, 4), None),  # float
        (torch.zeros(2, 2, 4, 4, dtype=torch.uint8), None),  # two channels
        (torch.zeros(2, 4, 4, dtype=torch.uint8), None),  # no channel axis
        (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64)),
        (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int32)),
    ],
)
def test_dataset_rejects_malformed_tensors(images, labels):
    with pytest.raises(ValueError):
        ImageDataset(images, labels, 0 if labels is None else 1, "bad", [])


def test_sample_scales_and_keeps_labels_aligned():
    dataset = make_dataset()
    x, y = dataset.sample(32, torch.Generator().manual_seed(3))
    index = torch.randint(8, (32,), generator=torch.Generator().manual_seed(3))
    assert x.dtype == torch.float32 and x.shape == (32, 3, 2, 2)
    assert torch.equal(x, dataset.images[index].float() / 127.5 - 1)
    assert torch.equal(y, dataset.labels[index])


def test_sample_range_is_exactly_minus_one_to_one():
    images = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)
    x, y = ImageDataset(images, None, 0, "ends", []).sample(64, torch.Generator().manual_seed(0))
    assert set(x.flatten().tolist()) == {-1.0, 1.0} and y is None


def test_sample_is_seeded():
    dataset = make_dataset()
    first = dataset.sample(16, torch.Generator().manual_seed(7))
    again = dataset.sample(16, torch.Generator().manual_seed(7))
    other = dataset.sample(16, torch.Generator().manual_seed(8))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])


# Array transforms


def test_rgb_to_gray_uses_bt601_weights():
    pixel = torch.tensor([10, 20, 30], dtype=torch.uint8).view(1, 3, 1, 1)
    gray = convert_channels(pixel, 1)
    assert gray.dtype == torch.uint8 and gray.shape == (1, 1, 1, 1)
    assert gray.item() == round(0.299 * 10 + 0.587 * 20 + 0.114 * 30)  # 18.15 -> 18


def test_gray_to_rgb_replicates_and_zero_keeps():
    gray = torch.randint(0, 256, (2, 1, 3, 3), dtype=torch.uint8)
    rgb = convert_channels(gray, 3)
    assert rgb.shape == (2, 3, 3, 3) and rgb.is_contiguous()
    assert all(torch.equal(rgb[:, k], gray[:, 0]) for k in range(3))
    assert convert_channels(gray, 0) is gray


def test_resize_keeps_constant_images_constant():
    images = torch.full((2, 1, 28, 28), 77, dtype=torch.uint8)
    up = resize_images(images, 32)
    assert up.shape == (2, 1, 32, 32) and up.dtype == torch.uint8
    assert torch.all(up == 77)
    assert resize_images(images, 0) is images


def test_resize_is_antialiased():
    """Thin bright lines every 8 pixels: point-sampling bilinear would hit them at full
    brightness; an antialiased 8x reduction averages them down to about a quarter."""
    row = torch.tensor([0, 0, 0, 255, 255, 0, 0, 0], dtype=torch.uint8).repeat(8)
    images = row.view(1, 1, 1, 64).expand(1, 1, 64, 64).contiguous()
    small = resize_images(images, 8)
    assert small.shape == (1, 1, 8, 8)
    assert 30 < small.float().mean() < 110


def test_resize_non_square_crops_the_center():
    """An 8x20 image whose 12 middle columns are bright: the 8x8 center crop is all band."""
    images = torch.zeros(1, 1, 8, 20, dtype=torch.uint8)
    images[..., 4:16] = 200
    out = resize_images(images, 8)
    assert out.shape == (1, 1, 8, 8)
    assert torch.all(out == 200)


# The dispatcher


def test_image_dataset_names():
    assert IMAGE_DATASETS == ["mnist", "fashion-mnist", "cifar10", "stacked-mnist"]


@pytest.mark.parametrize(
    "name, hint", [("mnsit", "'mnist'"), ("cifar-10", "'cifar10'"), ("fashion_mnist", "fashion")]
)
def test_unknown_name_suggests(name, hint):
    message = usage_error(name)
    assert f"'{name}'" in message and "did you mean" in message and hint in message


def test_missing_path_and_non_dataset_file(tmp_path):
    missing = tmp_path / "nope" / "images.npz"
    assert "does not exist" in usage_error(str(missing))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    message = usage_error(str(text))
    assert str(text) in message and "not an image dataset" in message


@pytest.mark.parametrize(
    "options, words",
    [
        ({"split": "val"}, "unknown split 'val'"),
        ({"resolution": -1}, "data.resolution"),
        ({"channels": 2}, "data.channels"),
    ],
)
def test_bad_options(options, words):
    assert words in usage_error("mnist", **options)


# .npz images


def save_npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def test_npz_gray_with_labels(tmp_path):
    x = random_images()
    path = save_npz(tmp_path / "d.npz", x=x, y=np.array([0, 2, 1, 2, 0, 1]))
    dataset = load_images(path)
    assert dataset.shape == (1, 5, 7) and len(dataset) == 6 and dataset.name == path
    assert np.array_equal(dataset.images[:, 0].numpy(), x)
    assert dataset.labels.dtype == torch.int64 and dataset.labels.tolist() == [0, 2, 1, 2, 0, 1]
    assert dataset.n_classes == 3 and dataset.class_names == ["0", "1", "2"]


def test_npz_rgb_channels_last_under_images_key(tmp_path):
    x = random_images(c=3)
    dataset = load_images(save_npz(tmp_path / "d.npz", images=x, other=np.zeros(2)))
    assert dataset.shape == (3, 5, 7) and dataset.labels is None and dataset.n_classes == 0
    assert np.array_equal(dataset.images.permute(0, 2, 3, 1).numpy(), x)


def test_npz_only_array_any_name_and_options(tmp_path):
    path = save_npz(tmp_path / "d.npz", pictures=random_images(h=8, w=8))
    dataset = load_images(path, resolution=4, channels=3)
    assert dataset.shape == (3, 4, 4) and dataset.images.dtype == torch.uint8


def test_npz_labels_false_drops_labels(tmp_path):
    path = save_npz(tmp_path / "d.npz", x=random_images(), y=np.arange(6))
    dataset = load_images(path, labels=False)
    assert dataset.labels is None and dataset.n_classes == 0 and dataset.class_names == []


def test_npz_keras_layout_test_split(tmp_path):
    train, test = random_images(4, seed=1), random_images(3, seed=2)
    path = save_npz(
        tmp_path / "k.npz", x_train=train, y_train=np.arange(4), x_test=test, y_test=np.arange(3)
    )
    assert np.array_equal(load_images(path).images[:, 0].numpy(), train)
    dataset = load_images(path, split="test")
    assert np.array_equal(dataset.images[:, 0].numpy(), test)
    assert dataset.labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"x": np.zeros((4, 5, 5), np.float32)}, "float32, not uint8"),
        ({"x": np.zeros((4, 3, 5, 5), np.uint8)}, "channels-first"),
        ({"x": np.zeros((4, 5, 5, 2), np.uint8)}, "(N, H, W, 3)"),
        ({"x": np.zeros((0, 5, 5), np.uint8)}, "empty"),
        ({"x": random_images(), "y": np.arange(5)}, "not 6 integers"),
        ({"x": random_images(), "y": np.ones(6)}, "not 6 integers"),
        ({"x": random_images(), "y": -np.arange(6)}, "negative"),
        ({"a": random_images(), "b": random_images()}, "a, b"),
    ],
)
def test_npz_bad_contents(tmp_path, arrays, words):
    path = save_npz(tmp_path / "bad.npz", **arrays)
    message = usage_error(path)
    assert path in message and words in message


def test_npz_without_test_split(tmp_path):
    path = save_npz(tmp_path / "d.npz", x=random_images())
    assert "x_test" in usage_error(path, split="test")


def test_npz_object_array_is_not_unpickled(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
    assert str(path) in usage_error(str(path))


def test_npz_corrupt_file(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    assert str(path) in usage_error(str(path))


# is_image_dataset


def test_is_image_dataset(tmp_path):
    assert all(is_image_dataset(name) for name in IMAGE_DATASETS)
    assert is_image_dataset(str(tmp_path))
    assert is_image_dataset(save_npz(tmp_path / "gray.npz", x=random_images()))
    assert is_image_dataset(save_npz(tmp_path / "rgb.npz", images=random_images(c=3), y=[1]))
    assert not is_image_dataset(save_npz(tmp_path / "points.npz", x=np.zeros((9, 2))))
    assert not is_image_dataset(save_npz(tmp_path / "table.npz", x=np.zeros((9, 2), np.uint8)))
    assert not is_image_dataset(save_npz(tmp_path / "floats.npz", x=np.zeros((9, 4, 4))))
    np.save(tmp_path / "images.npy", random_images())
    assert not is_image_dataset(str(tmp_path / "images.npy"))
    assert not is_image_dataset(str(tmp_path / "missing.npz"))
    assert not is_image_dataset("ring")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    assert not is_image_dataset(str(tmp_path / "junk.npz"))


# The shared MNIST file that tests and benchmarks use


@pytest.mark.skipif(not SHARED_MNIST.is_file(), reason="needs /work/shared/data/mnist.npz")
def test_shared_mnist_loads_by_name():
    dataset = load_images("mnist", root=str(SHARED_MNIST.parent))
    assert dataset.name == "mnist" and dataset.shape == (1, 28, 28) and len(dataset) == 60000
    assert dataset.n_classes == 10 and dataset.class_names == [str(k) for k in range(10)]
    counts = torch.bincount(dataset.labels, minlength=10)
    assert counts[:3].tolist() == [5923, 6742, 5958]
    test = load_images("mnist", root=str(SHARED_MNIST.parent), split="test", download=False)
    assert len(test) == 10000
