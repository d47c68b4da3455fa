"""MNIST and Fashion-MNIST from the official IDX files or a Keras-layout .npz.

Looked for, in order: ``root/<name>/`` holding the split's IDX pair (``train-images-idx3-ubyte``
and ``train-labels-idx1-ubyte``, or ``t10k-...`` for test; gzipped or not), then
``root/<name>/<name>.npz`` and ``root/<name>.npz`` (Keras keys x_train, y_train, x_test,
y_test). Missing files are downloaded into ``root/<name>/`` when allowed, checked against
the SHA-256 sums below (as listed in tensorflow/datasets' url_checksums; the mirrors serve
the same bytes as the original yann.lecun.com files).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from minmax.data.download import DownloadError, Remote, download_all
from minmax.data.npz_images import UNREADABLE
from minmax.errors import UsageError

MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
}
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
        ),
        "train-labels-idx1-ubyte.gz": (
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
        ),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
        ),
        "train-labels-idx1-ubyte.gz": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
        ),
    },
}
STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion-mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}
IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes, the only one MNIST uses


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as file:
                return file.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise UsageError(
            f"could not read '{path}' ({_one_line(error)}): delete it and download it again"
        ) from None


def read_idx(path: Path, rank: int) -> np.ndarray:
    """A uint8 IDX array of the given rank (3: images N x H x W, 1: labels N), header-checked.

    IDX: two zero bytes, a type code, the rank, then ``rank`` big-endian uint32 sizes and the
    data; any other length of data means a truncated or wrong file.
    """
    data = _read_bytes(path)
    header = 4 + 4 * rank
    if len(data) < header or data[:4] != bytes([0, 0, IDX_UBYTE, rank]):
        raise UsageError(
            f"'{path}' is not an IDX file of rank-{rank} uint8 data (starts {data[:4].hex()}, "
            f"expected {bytes([0, 0, IDX_UBYTE, rank]).hex()}): delete it and download it again"
        )
    dims = struct.unpack(f">{rank}I", data[4:header])
    expected = math.prod(dims)
    if len(data) - header != expected:
        raise UsageError(
            f"IDX file '{path}' is truncated or damaged: its header says {dims} "
            f"({expected} bytes of data), it holds {len(data) - header}: delete it and "
            "download it again"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _check(images: np.ndarray, labels: np.ndarray, where: str, fix: str) -> None:
    """Non-empty images and one label 0..9 per image: what a damaged file gets wrong."""
    if 0 in images.shape:
        raise UsageError(f"{where} holds no images (shape {images.shape}): {fix}")
    if labels.min() < 0 or labels.max() >= 10:
        raise UsageError(
            f"{where} holds labels outside 0..9 ({labels.min()}..{labels.max()}): {fix}"
        )


def _from_idx(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise UsageError(
            f"'{images_path}' holds {len(images)} images but '{labels_path}' {len(labels)} "
            "labels: the two files are from different splits or damaged; download them again"
        )
    where = f"'{images_path}' with '{labels_path}'"
    _check(images, labels, where, "they are damaged; delete them and download them again")
    return images[:, None], labels.astype(np.int64)


def _from_keras(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    keys = (f"x_{split}", f"y_{split}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            images, labels = (archive[key] for key in keys)
    except (*UNREADABLE, KeyError) as error:
        raise UsageError(
            f"could not read '{path}' as a Keras-layout MNIST file with arrays "
            f"{', '.join(keys)} ({_one_line(error)}): replace it with the official files"
        ) from None
    if (
        images.dtype != np.uint8
        or images.ndim != 3
        or labels.dtype.kind not in "iu"
        or labels.shape != (len(images),)
    ):
        raise UsageError(
            f"'{path}' holds {keys[0]} {images.dtype} {images.shape} and {keys[1]} "
            f"{labels.dtype} {labels.shape}: expected uint8 (N, 28, 28) images and N integer "
            "labels"
        )
    _check(images, labels, f"'{path}'", "replace it with the official files")
    return images[:, None], labels.astype(np.int64)


def _remotes(name: str, split: str) -> list[Remote]:
    files = [f"{stem}.gz" for stem in STEMS[split]]
    return [
        Remote(file, tuple(base + file for base in MIRRORS[name]), SHA256[name][file])
        for file in files
    ]


def _missing(name: str, root: Path, split: str, failure: str | None) -> UsageError:
    """Which files to put where, and how to have them fetched."""
    files = " and ".join(f"{stem}.gz" for stem in STEMS[split])
    where = (
        f"put {files} (from {MIRRORS[name][0]}) in '{root / name}', or a Keras-layout "
        f"{name}.npz in '{root}'"
    )
    if failure is None:
        return UsageError(
            f"{name} {split} files not found: {where}; or set data.download=true to fetch "
            "them when online"
        )
    return UsageError(
        f"{name} {split} files not found, and {failure}: {where}, "
        "or retry online with data.download=true"
    )


def load_mnist(
    name: str, root: Path, split: str, download: bool
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """uint8 (N, 1, 28, 28) images, int64 labels and class names of MNIST or Fashion-MNIST."""
    folder = root / name
    images_path, labels_path = (_find(folder, stem) for stem in STEMS[split])
    if images_path and labels_path:
        return (*_from_idx(images_path, labels_path), CLASS_NAMES[name])
    for keras in (folder / f"{name}.npz", root / f"{name}.npz"):
        if keras.is_file():
            return (*_from_keras(keras, split), CLASS_NAMES[name])
    if not download:
        raise _missing(name, root, split, None)
    try:
        images_path, labels_path = download_all(_remotes(name, split), folder)
    except DownloadError as error:
        raise _missing(name, root, split, _one_line(error)) from None
    return (*_from_idx(images_path, labels_path), CLASS_NAMES[name])
