"""Users' images as arrays in an .npz: uint8 (N, H, W) or (N, H, W, C), optional int labels.

Keys: images under ``x`` or ``images`` (or ``x_train``, or the only array), labels under
``y`` or ``labels`` (or ``y_train``). ``x_test`` / ``y_test`` are the test split, so a
Keras-layout file such as ``mnist.npz`` works as is. Always ``allow_pickle=False``.

A damaged file fails in many ways (zipfile, zlib and numpy each raise their own types, for
truncation, flipped bytes, unsupported zip features or a header claiming a huge array):
every one of them becomes a UsageError naming the file.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from minmax.errors import UsageError

IMAGE_KEYS = {"train": ("x", "images", "x_train"), "test": ("x_test",)}
LABEL_KEYS = {"train": ("y", "labels", "y_train"), "test": ("y_test",)}
# What reading a damaged .npz raises; RuntimeError is zipfile's "encrypted" and
# NotImplementedError its "unsupported compression / zip version".
UNREADABLE = (
    OSError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    MemoryError,
)
MAX_CLASSES = 65536  # a label above this is a damaged file, not a class (ImageNet-21k: 21841)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _image_key(names: list[str], split: str) -> str | None:
    """The array holding the split's images; the only array counts as training images."""
    found = [key for key in IMAGE_KEYS[split] if key in names]
    if found:
        return found[0]
    return names[0] if split == "train" and len(names) == 1 else None


def _headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each array in an .npz, from the .npy headers only (no data read)."""
    headers = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as file:
                version = np.lib.format.read_magic(file)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(file)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(file)
                else:
                    continue
            headers[info.filename[: -len(".npy")]] = (shape, dtype)
    return headers


def holds_images(path: Path) -> bool:
    """Whether the .npz's training images are uint8 of rank 3 or 4 (an N x d table is not)."""
    try:
        headers = _headers(path)
    except UNREADABLE:
        return False
    key = _image_key(sorted(headers), "train")
    if key is None:
        return False
    shape, dtype = headers[key]
    return dtype == np.uint8 and len(shape) in (3, 4)


def _to_nchw(images: np.ndarray, path: Path, key: str) -> np.ndarray:
    if images.dtype != np.uint8:
        raise UsageError(
            f"images '{key}' in '{path}' are {images.dtype}, not uint8: save pixel values "
            "0..255 as uint8, e.g. x.astype(np.uint8)"
        )
    if images.ndim == 3:
        images = images[:, :, :, None]
    if images.ndim != 4 or images.shape[3] not in (1, 3):
        hint = (
            "they look channels-first: save x.transpose(0, 2, 3, 1)"
            if images.ndim == 4 and images.shape[1] in (1, 3)
            else "save (N, H, W) gray or (N, H, W, 3) RGB images"
        )
        raise UsageError(
            f"images '{key}' in '{path}' have shape {images.shape}, not (N, H, W) or "
            f"(N, H, W, C) with C in {{1, 3}}: {hint}"
        )
    if 0 in images.shape:
        raise UsageError(f"images '{key}' in '{path}' are empty (shape {images.shape}): add images")
    return images.transpose(0, 3, 1, 2)


def _check_labels(labels: np.ndarray, n: int, path: Path, key: str) -> np.ndarray:
    if labels.dtype.kind not in "iu" or labels.ndim != 1 or len(labels) != n:
        raise UsageError(
            f"labels '{key}' in '{path}' are {labels.dtype} {labels.shape}, not {n} integers "
            f"(one per image): save y as an int array of shape ({n},)"
        )
    if labels.min() < 0:
        raise UsageError(f"labels '{key}' in '{path}' hold negative values: use classes 0..K-1")
    if labels.max() >= MAX_CLASSES:
        raise UsageError(
            f"labels '{key}' in '{path}' reach {labels.max()}, more than {MAX_CLASSES} classes: "
            "number the classes 0..K-1"
        )
    return labels.astype(np.int64)


def _read(path: Path, split: str) -> tuple[np.ndarray, np.ndarray | None, str, str | None]:
    """The split's images and labels arrays, and the keys they came from."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = sorted(archive.files)
            key = _image_key(names, split)
            label_key = next((k for k in LABEL_KEYS[split] if k in names), None)
            images = archive[key] if key else None
            labels = archive[label_key] if key and label_key else None
    except UNREADABLE as error:
        raise UsageError(
            f"could not read images file '{path}' ({_one_line(error)}): save it with "
            "np.savez(path, x=images, y=labels) on uint8 images"
        ) from None
    if key is None:
        wanted = " or ".join(IMAGE_KEYS[split])
        raise UsageError(
            f"images file '{path}' has no {split} images (arrays: {', '.join(names) or 'none'}): "
            f"save them under {wanted}, e.g. np.savez(path, x=images, y=labels)"
        )
    return images, labels, key, label_key


def load_npz_images(path: Path, split: str) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """uint8 (N, C, H, W) images, int64 labels or None, and class names "0".."K-1"."""
    images, labels, key, label_key = _read(path, split)
    images = _to_nchw(images, path, key)
    if labels is None:
        return images, None, []
    labels = _check_labels(labels, len(images), path, label_key)
    return images, labels, [str(k) for k in range(int(labels.max()) + 1)]
