"""Hostile and messy image data: every bad file is named in one line or, with skip_bad,
left out and counted; odd pixel formats decode to what they show; nothing loops forever,
nothing is extracted outside its folder."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minmax.config import DataConfig
from minmax.data import cifar10, download, folder, mnist
from minmax.data.images import load_images
from minmax.data.sources import resolve_data
from minmax.errors import UsageError

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ROOT_READS_ANYTHING = "runs as root, for whom chmod 000 does not block reads"


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
    shape = (h, w, channels) if channels > 1 else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(path: Path, image: np.ndarray | Image.Image, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    image.save(path, **options)
    return path


def load(path: Path, tmp_path: Path, **options):
    return load_images(str(path), root=str(tmp_path / "root"), **options)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb's calling card."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def bad_files(where: Path) -> dict[str, Path]:
    """One of each kind of file that is not a usable image."""
    where.mkdir(parents=True, exist_ok=True)
    truncated = save(where / "truncated.png", pixels())
    truncated.write_bytes(truncated.read_bytes()[:-40])  # header fine, pixels cut
    files = {
        "text": where / "notes.png",
        "empty": where / "empty.jpg",
        "truncated": truncated,
        "broken_link": where / "gone.png",
        "bomb": where / "bomb.png",
    }
    files["text"].write_text("a text file renamed .png")
    files["empty"].write_bytes(b"")
    files["broken_link"].symlink_to(where / "no-such-file.png")
    files["bomb"].write_bytes(png_claiming(9000, 8000))  # over MAX_PIXELS, under Pillow's
    return files


# One clear error per kind of bad file


@pytest.mark.parametrize("kind", ["text", "empty", "truncated", "broken_link", "bomb"])
def test_each_bad_file_is_named(tmp_path, kind):
    save(tmp_path / "d" / "good.png", pixels())
    path = bad_files(tmp_path / "bad")[kind]
    os.replace(path, tmp_path / "d" / path.name)
    message = usage_error(str(tmp_path / "d"), root=str(tmp_path / "root"))
    assert str(tmp_path / "d" / path.name) in message and "data.skip_bad=true" in message
    if kind == "empty":
        assert "0 bytes" in message
    if kind == "bomb":
        assert "9000x8000" in message and "decompression bomb" in message


def test_pillows_own_bomb_error_is_named(tmp_path):
    assert folder.MAX_PIXELS < Image.MAX_IMAGE_PIXELS, "ours is the tighter limit"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "huge.png").write_bytes(png_claiming(100_000, 100_000))
    message = usage_error(str(tmp_path / "d"), root=str(tmp_path / "root"))
    assert "huge.png" in message and "decompression bomb" in message


def test_pillows_own_bomb_warning_is_an_error(tmp_path, monkeypatch):
    """Between Pillow's limit and twice it, Pillow only warns: that must not slip through."""
    save(tmp_path / "d" / "a.png", pixels(10, 10))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 60)  # 100 pixels: a warning, not an error
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no stray warning either
        message = usage_error(str(tmp_path / "d"), root=str(tmp_path / "root"))
    assert "a.png" in message and "decompression bomb" in message


def test_a_fifo_is_refused_not_waited_on(tmp_path):
    save(tmp_path / "d" / "good.png", pixels())
    os.mkfifo(tmp_path / "d" / "pipe.png")
    assert "not a regular file" in usage_error(str(tmp_path / "d"), root=str(tmp_path / "r"))


@pytest.mark.skipif(AS_ROOT, reason=ROOT_READS_ANYTHING)
def test_unreadable_file_and_folder(tmp_path):
    save(tmp_path / "d" / "good.png", pixels())
    locked = save(tmp_path / "d" / "locked.png", pixels())
    locked.chmod(0)
    try:
        assert str(locked) in usage_error(str(tmp_path / "d"), root=str(tmp_path / "r"))
        assert load(tmp_path / "d", tmp_path, skip_bad=True).skipped == 1
    finally:
        locked.chmod(0o644)
    sub = tmp_path / "d" / "sub"
    save(sub / "x.png", pixels())
    sub.chmod(0)
    try:
        message = usage_error(str(tmp_path / "d"), root=str(tmp_path / "r"), labels=False)
        assert str(sub) in message and "could not list" in message
    finally:
        sub.chmod(0o755)


# skip_bad: left out, counted, reported


def test_skip_bad_leaves_bad_files_out_and_counts_them(tmp_path):
    good = [save(tmp_path / "d" / "cats" / f"{k}.png", pixels(seed=k)) for k in range(2)]
    save(tmp_path / "d" / "dogs" / "d.png", pixels(seed=9))
    bad_files(tmp_path / "d" / "cats")  # five bad files among the cats
    with pytest.warns(UserWarning, match=r"skipped 5 of 8 entries in image folder") as caught:
        dataset = load(tmp_path / "d", tmp_path, skip_bad=True)
    assert len(dataset) == 3 and dataset.skipped == 5 and "skipped=5" in repr(dataset)
    assert dataset.class_names == ["cats", "dogs"] and dataset.labels.tolist() == [0, 0, 1]
    first = np.asarray(Image.open(good[0]))
    assert np.array_equal(dataset.images[0].permute(1, 2, 0).numpy(), first)
    text = str(caught[0].message)
    assert "'cats/bomb.png'" in text and "and 2 more" in text and "\n" not in text
    # From the cache: the same images, and the same report (every run says what it left out).
    with pytest.warns(UserWarning, match="skipped 5 of 8"):
        again = load(tmp_path / "d", tmp_path, skip_bad=True)
    assert again.skipped == 5 and np.array_equal(again.images, dataset.images)
    # The cache made with skip_bad never answers a load without it.
    message = usage_error(str(tmp_path / "d"), root=str(tmp_path / "root"))
    assert str(tmp_path / "d" / "cats" / "bomb.png") in message  # the first in sorted order


def test_skip_bad_reaches_the_dataset_through_the_config(tmp_path):
    save(tmp_path / "d" / "a.png", pixels())
    (tmp_path / "d" / "b.png").write_bytes(b"")
    with pytest.warns(UserWarning, match="skipped 1 of 2"):
        source = resolve_data(DataConfig(name=str(tmp_path / "d"), skip_bad=True))
    assert source.dataset.skipped == 1 and len(source.dataset) == 1
    with pytest.raises(UsageError, match="b.png"):
        resolve_data(DataConfig(name=str(tmp_path / "d")))
    assert DataConfig().skip_bad is False


def test_a_folder_of_only_bad_files(tmp_path):
    bad_files(tmp_path / "d")
    message = usage_error(str(tmp_path / "d"), root=str(tmp_path / "r"), skip_bad=True)
    assert "none of the 5 image files" in message


def test_a_class_whose_files_are_all_bad_is_no_class(tmp_path):
    save(tmp_path / "d" / "b" / "x.png", pixels())
    (tmp_path / "d" / "a" / "y.png").parent.mkdir()
    (tmp_path / "d" / "a" / "y.png").write_bytes(b"junk")
    with pytest.warns(UserWarning):
        dataset = load(tmp_path / "d", tmp_path, skip_bad=True)
    assert dataset.class_names == ["b"] and dataset.labels.tolist() == [0]


def test_a_bad_loose_file_beside_class_folders_is_skipped_not_a_layout_error(tmp_path):
    save(tmp_path / "d" / "cats" / "a.png", pixels())
    (tmp_path / "d" / "Thumbs.png").write_bytes(b"not an image")
    assert "data.labels=false" in usage_error(str(tmp_path / "d"), root=str(tmp_path / "r"))
    with pytest.warns(UserWarning, match="Thumbs.png"):
        dataset = load(tmp_path / "d", tmp_path, skip_bad=True)
    assert dataset.class_names == ["cats"] and dataset.skipped == 1


# Pixel formats


def test_16_bit_gray_is_scaled_not_clipped(tmp_path):
    wide = np.array([[0, 257, 257 * 100], [257 * 200, 65535, 128]], np.uint16)
    save(tmp_path / "d" / "a.png", wide)
    assert Image.open(tmp_path / "d" / "a.png").mode.startswith("I")
    dataset = load(tmp_path / "d", tmp_path)
    assert dataset.shape == (1, 2, 3), "16-bit gray is gray"
    assert dataset.images[0, 0].tolist() == [[0, 1, 100], [200, 255, 0]]


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, 0] = [10, 20, 30, 0]  # invisible: white, whatever colour hides under it
    rgba[0, 1] = [10, 20, 30, 255]  # opaque: its colour
    rgba[0, 2] = [0, 0, 0, 128]  # half black on white: mid gray
    save(tmp_path / "rgba" / "a.png", rgba)
    row = load(tmp_path / "rgba", tmp_path).images[0, :, 0].T.tolist()
    assert row[0] == [255, 255, 255] and row[1] == [10, 20, 30]
    assert all(abs(value - 127) <= 1 for value in row[2])
    gray_alpha = Image.fromarray(np.array([[[50, 0], [50, 255]]], np.uint8), "LA")
    save(tmp_path / "la" / "a.png", gray_alpha)
    dataset = load(tmp_path / "la", tmp_path)
    assert dataset.shape == (1, 1, 2) and dataset.images.flatten().tolist() == [255, 50]


def test_palette_cmyk_and_mixed_modes_become_one_rgb_set(tmp_path):
    colours = np.array([[[200, 0, 0], [0, 200, 0]], [[0, 0, 200], [9, 9, 9]]], np.uint8)
    save(tmp_path / "d" / "1-palette.png", Image.fromarray(colours).quantize(4))
    transparent_palette = Image.fromarray(colours).quantize(4)
    transparent_palette.info["transparency"] = transparent_palette.getpixel((0, 0))
    save(tmp_path / "d" / "2-palette-transparent.png", transparent_palette)
    save(tmp_path / "d" / "3-cmyk.jpg", Image.new("CMYK", (2, 2), (0, 255, 255, 0)), quality=100)
    save(tmp_path / "d" / "4-gray.png", np.full((4, 4), 77, np.uint8))
    dataset = load(tmp_path / "d", tmp_path, resolution=2)
    assert dataset.shape == (3, 2, 2) and len(dataset) == 4
    palette, transparent, cmyk, gray = (image.permute(1, 2, 0).numpy() for image in dataset.images)
    assert np.array_equal(palette, colours)
    assert transparent[0, 0].tolist() == [255, 255, 255] and np.array_equal(
        transparent[1], colours[1]
    )
    assert np.all(np.abs(cmyk.astype(int) - [255, 0, 0]) <= 2), "CMYK (0, 255, 255, 0) is red"
    assert np.all(gray == 77)


# Links: followed, but never round in circles


def test_symlink_loops_end_and_linked_class_folders_count(tmp_path):
    data = tmp_path / "d"
    save(data / "cats" / "a.png", pixels(seed=1))
    save(tmp_path / "elsewhere" / "b.png", pixels(seed=2))
    (data / "cats" / "up").symlink_to(data)  # d/cats/up/cats/up/... forever, if followed blindly
    (data / "cats" / "self").symlink_to(data / "cats")
    (data / "dogs").symlink_to(tmp_path / "elsewhere")  # a class folder kept elsewhere
    (data / "dogs-again").symlink_to(tmp_path / "elsewhere")  # the same folder twice: once
    (data / "cats" / "c.png").symlink_to(tmp_path / "elsewhere" / "b.png")  # a linked file
    dataset = load(data, tmp_path)
    assert dataset.class_names == ["cats", "dogs"] and dataset.labels.tolist() == [0, 0, 1]
    assert len(dataset) == 3


# Single-file sources: npz, IDX, Keras npz, CIFAR-10


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"x": np.zeros((3, 0, 5), np.uint8)}, "empty"),
        ({"x": np.zeros((3, 4, 5), np.uint8), "y": np.array([0, 1, 2**40])}, "classes"),
        ({"x": np.zeros((3, 4, 5), np.uint8), "y": np.array([0, 1])}, "not 3 integers"),
        ({"x": np.zeros((3, 4, 5), np.uint8), "y": np.array([[0, 1, 2]])}, "not 3 integers"),
    ],
)
def test_npz_shapes_and_labels_that_do_not_fit(tmp_path, arrays, words):
    np.savez(tmp_path / "d.npz", **arrays)
    message = usage_error(str(tmp_path / "d.npz"))
    assert str(tmp_path / "d.npz") in message and words in message


def test_npz_damaged_inside_the_zip(tmp_path):
    path = tmp_path / "d.npz"
    np.savez_compressed(path, x=np.zeros((50, 8, 8), np.uint8))
    data = bytearray(path.read_bytes())
    data[60:70] = b"\xff" * 10  # inside the deflate stream
    path.write_bytes(bytes(data))
    assert str(path) in usage_error(str(path))


def idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(where: Path, images: np.ndarray, labels: np.ndarray) -> None:
    where.mkdir(parents=True, exist_ok=True)
    for stem, array in zip(mnist.STEMS["train"], (images, labels), strict=True):
        (where / f"{stem}.gz").write_bytes(gzip.compress(idx(array), mtime=0))


@pytest.mark.parametrize(
    "images, labels, words",
    [
        (np.zeros((2, 28, 28)), np.array([3, 10]), "outside 0..9"),
        (np.zeros((0, 28, 28)), np.zeros(0), "no images"),
        (np.zeros((2, 0, 28)), np.array([1, 2]), "no images"),
    ],
)
def test_idx_contents_that_do_not_fit(tmp_path, images, labels, words):
    write_idx(tmp_path / "mnist", images, labels)
    message = usage_error("mnist", root=str(tmp_path), download=False)
    assert "train-images-idx3-ubyte.gz" in message and words in message


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"x_train": np.zeros((2, 28, 28), np.uint8), "y_train": np.ones(2)}, "integer labels"),
        ({"x_train": np.zeros((2, 28, 28), np.uint8), "y_train": np.array([0, 12])}, "0..9"),
        ({"x_train": np.zeros((0, 28, 28), np.uint8), "y_train": np.zeros(0, int)}, "no images"),
        ({"x_test": np.zeros((2, 28, 28), np.uint8)}, "x_train"),
    ],
)
def test_keras_npz_contents_that_do_not_fit(tmp_path, arrays, words):
    np.savez(tmp_path / "mnist.npz", **arrays)
    message = usage_error("mnist", root=str(tmp_path), download=False)
    assert str(tmp_path / "mnist.npz") in message and words in message


def test_keras_npz_that_is_not_a_zip(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 truncated zip")
    assert str(tmp_path / "mnist.npz") in usage_error("mnist", root=str(tmp_path), download=False)


def cifar_members(n: int = 2) -> dict[str, bytes]:
    """Every batch of a tiny CIFAR-10, pickled as plain dicts of a numpy array and labels."""
    names = [*cifar10.BATCHES["train"], *cifar10.BATCHES["test"]]
    data = np.zeros((n, 3072), np.uint8)
    return {name: pickle.dumps({"data": data, "labels": [1] * n}, protocol=4) for name in names}


def test_cifar10_archive_members_never_reach_the_disk(tmp_path):
    """Members named '../x', '/abs/x', or links are never written: batches are read in memory,
    and only regular members with the exact batch names are read at all."""
    members = cifar_members()
    target = tmp_path / "root" / "cifar10"
    path = target / cifar10.ARCHIVE
    target.mkdir(parents=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, blob in {
            **{f"{cifar10.BATCH_DIR}/{k}": v for k, v in members.items()},
            "../../escaped.txt": b"outside",
            str(tmp_path / "absolute.txt"): b"absolute",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
        link = tarfile.TarInfo(f"{cifar10.BATCH_DIR}/../linked")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert len(load_images("cifar10", root=str(tmp_path / "root"), download=False)) == 10
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_cifar10_batch_that_is_a_link_is_not_followed(tmp_path):
    members = cifar_members()
    path = tmp_path / cifar10.ARCHIVE
    with tarfile.open(path, "w:gz") as archive:
        for name, blob in members.items():
            if name == "test_batch":
                link = tarfile.TarInfo(f"{cifar10.BATCH_DIR}/{name}")
                link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
                archive.addfile(link)
                continue
            info = tarfile.TarInfo(f"{cifar10.BATCH_DIR}/{name}")
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
    message = usage_error("cifar10", root=str(tmp_path), split="test", download=False)
    assert "lacks test_batch" in message
