"""Folders of images: labels from sub-folders, resizing without upscaling, clear errors for bad
files, and a decode cache that the second load reuses."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from minmax.data import download, folder
from minmax.data.images import load_images
from minmax.errors import UsageError


@pytest.fixture(autouse=True)
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINMAX_CACHE", str(tmp_path / "cache-root"))
    monkeypatch.setattr(download, "urlopen", lambda url, **k: pytest.fail(f"network: {url}"))


def usage_error(*args, **kwargs) -> str:
    with pytest.raises(UsageError) as info:
        load_images(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "the CLI prints one line"
    return message


def pixels(h=6, w=6, channels=3, seed=0) -> np.ndarray:
    shape = (h, w, channels) if channels == 3 else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(path: Path, array: np.ndarray, **options) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)
    return array


def test_flat_folder_is_unlabelled_rgb(tmp_path):
    images = [save(tmp_path / "d" / f"{k}.png", pixels(seed=k)) for k in range(3)]
    dataset = load_images(str(tmp_path / "d"), root=str(tmp_path))
    assert dataset.name == str(tmp_path / "d") and dataset.shape == (3, 6, 6)
    assert dataset.labels is None and dataset.n_classes == 0 and dataset.class_names == []
    for k in range(3):  # PNG is lossless, files come in sorted order
        assert np.array_equal(dataset.images[k].permute(1, 2, 0).numpy(), images[k])


def test_class_sub_folders_become_labels(tmp_path):
    save(tmp_path / "d" / "dogs" / "a.png", pixels())
    save(tmp_path / "d" / "cats" / "x" / "deep.jpg", pixels(), quality=95)
    save(tmp_path / "d" / "cats" / "b.webp", pixels(), lossless=True)
    save(tmp_path / "d" / "dogs" / "c.BMP", pixels())
    (tmp_path / "d" / "dogs" / "notes.txt").write_text("not an image")
    (tmp_path / "d" / "dogs" / "._a.png").write_bytes(b"macOS metadata, not an image")
    save(tmp_path / "d" / ".thumbnails" / "t.png", pixels())
    dataset = load_images(str(tmp_path / "d"), root=str(tmp_path))
    assert dataset.class_names == ["cats", "dogs"] and dataset.n_classes == 2
    assert dataset.labels.tolist() == [0, 0, 1, 1]  # cats/b.webp, cats/x/deep.jpg, dogs/...
    unlabelled = load_images(str(tmp_path / "d"), root=str(tmp_path), labels=False)
    assert unlabelled.labels is None and torch.equal(unlabelled.images, dataset.images)


def test_loose_images_beside_class_folders(tmp_path):
    save(tmp_path / "d" / "loose.png", pixels())
    save(tmp_path / "d" / "cats" / "a.png", pixels())
    message = usage_error(str(tmp_path / "d"), root=str(tmp_path))
    assert "loose.png" in message and "data.labels=false" in message
    assert len(load_images(str(tmp_path / "d"), root=str(tmp_path), labels=False)) == 2


def test_channels_gray_rgb_and_conversions(tmp_path):
    gray = save(tmp_path / "gray" / "a.png", pixels(channels=1))
    assert load_images(str(tmp_path / "gray"), root=str(tmp_path)).shape == (1, 6, 6)
    rgb = load_images(str(tmp_path / "gray"), root=str(tmp_path), channels=3)
    assert rgb.shape == (3, 6, 6) and all(np.array_equal(rgb.images[0, k], gray) for k in range(3))
    save(tmp_path / "gray" / "b.png", pixels())  # one colour image makes the folder RGB
    assert load_images(str(tmp_path / "gray"), root=str(tmp_path)).shape == (3, 6, 6)
    color = np.zeros((2, 2, 3), np.uint8) + np.array([10, 20, 30], np.uint8)
    save(tmp_path / "color" / "a.png", color)
    luma = load_images(str(tmp_path / "color"), root=str(tmp_path), channels=1)
    assert luma.shape == (1, 2, 2) and torch.all(luma.images == 18)  # BT.601


def test_resize_shorter_side_then_center_crop(tmp_path):
    """40x20: scaled to 32x16, then the middle 16 columns - the green band's middle."""
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :10, 0], image[:, 10:30, 1], image[:, 30:, 2] = 255, 255, 255
    save(tmp_path / "d" / "wide.png", image)
    dataset = load_images(str(tmp_path / "d"), root=str(tmp_path), resolution=16)
    assert dataset.shape == (3, 16, 16)
    middle = dataset.images[0, :, :, 3:13].int()
    assert torch.all(middle[1] > 240) and torch.all(middle[0] < 15) and torch.all(middle[2] < 15)


def test_smaller_than_resolution_is_an_error(tmp_path):
    save(tmp_path / "d" / "big.png", pixels(40, 40))
    save(tmp_path / "d" / "small.png", pixels(40, 20))
    message = usage_error(str(tmp_path / "d"), root=str(tmp_path), resolution=32)
    assert str(tmp_path / "d" / "small.png") in message and "20x40" in message
    assert "not upscaled" in message


def test_mixed_sizes_need_a_resolution(tmp_path):
    save(tmp_path / "d" / "a.png", pixels(8, 8))
    save(tmp_path / "d" / "b.png", pixels(8, 10))
    assert "data.resolution" in usage_error(str(tmp_path / "d"), root=str(tmp_path))
    dataset = load_images(str(tmp_path / "d"), root=str(tmp_path), resolution=8)
    assert dataset.shape == (3, 8, 8) and len(dataset) == 2


def test_empty_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "readme.txt").write_text("nothing to see")
    message = usage_error(str(tmp_path / "d"), root=str(tmp_path))
    assert f"no images found in '{tmp_path / 'd'}'" in message


def test_unreadable_files_are_named(tmp_path):
    save(tmp_path / "d" / "good.png", pixels(64, 64))
    garbage = tmp_path / "d" / "garbage.png"
    garbage.write_bytes(b"definitely not a PNG")
    message = usage_error(str(tmp_path / "d"), root=str(tmp_path))
    assert str(garbage) in message
    garbage.unlink()
    truncated = tmp_path / "d" / "truncated.png"
    save(truncated, pixels(64, 64))
    truncated.write_bytes(truncated.read_bytes()[:200])
    assert str(truncated) in usage_error(str(tmp_path / "d"), root=str(tmp_path))


def test_folder_has_no_test_split(tmp_path):
    save(tmp_path / "d" / "a.png", pixels())
    assert "data.split=train" in usage_error(str(tmp_path / "d"), root=str(tmp_path), split="test")


def no_decoding(*args, **kwargs):
    raise AssertionError("decoded although the cache holds these images")


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    save(tmp_path / "d" / "cats" / "a.png", pixels(seed=1))
    save(tmp_path / "d" / "dogs" / "b.png", pixels(seed=2))
    first = load_images(str(tmp_path / "d"), root=str(tmp_path / "root"), resolution=4)
    entries = list((tmp_path / "root" / "cache").iterdir())
    assert len(entries) == 1 and len(entries[0].name) == 64
    assert sorted(p.name for p in entries[0].iterdir()) == ["images.npy", "labels.npy", "meta.json"]
    assert np.load(entries[0] / "images.npy", mmap_mode="r").shape == (2, 3, 4, 4)
    monkeypatch.setattr(folder, "_decode", no_decoding)
    monkeypatch.setattr(folder, "_probe", no_decoding)
    second = load_images(str(tmp_path / "d"), root=str(tmp_path / "root"), resolution=4)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.class_names == ["cats", "dogs"]


def test_changed_files_or_options_are_decoded_again(tmp_path, monkeypatch):
    image = tmp_path / "d" / "a.png"
    save(image, pixels(seed=1))
    load_images(str(tmp_path / "d"), root=str(tmp_path))
    save(image, pixels(seed=2))
    os.utime(image, ns=(0, 123_456_789))
    changed = load_images(str(tmp_path / "d"), root=str(tmp_path))
    assert np.array_equal(changed.images[0].permute(1, 2, 0).numpy(), pixels(seed=2))
    monkeypatch.setattr(folder, "_decode", no_decoding)
    with pytest.raises(AssertionError, match="decoded"):
        load_images(str(tmp_path / "d"), root=str(tmp_path), channels=1)
