"""CIFAR-10 from the official python archive, read without trusting its pickles.

The archive's batches are pickles, and unpickling can run any code. So only the known batch
members are read (never extracted to disk: no path traversal), through an Unpickler whose
``find_class`` admits the few numpy names a plain array needs and refuses everything else.
The loaded batch must then be a dict of a uint8 (n, 3072) array and n labels 0..9.

Looked for, in order: ``root/cifar10/cifar-10-python.tar.gz``, ``root/cifar-10-python.tar.gz``,
and the extracted ``cifar-10-batches-py/`` folder in those two places. Downloaded into
``root/cifar10/`` when missing and allowed (SHA-256 as listed in tensorflow/datasets'
url_checksums/cifar10.csv).
"""

from __future__ import annotations

import pickle
import tarfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from minmax.data.download import DownloadError, Remote, download
from minmax.errors import UsageError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct

ARCHIVE = "cifar-10-python.tar.gz"
BATCH_DIR = "cifar-10-batches-py"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CLASS_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
# Everything a pickled numpy array needs (numpy 1 and 2 spell the module differently).
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class BatchUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; refuses any other global."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed") from None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _bad_batch(where: str, why: str) -> UsageError:
    return UsageError(
        f"CIFAR-10 batch '{where}' {why}: it is not the official data; delete it and download "
        f"{ARCHIVE} again"
    )


def read_batch(file: IO[bytes], where: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 3, 32, 32) images and int64 labels from one pickled batch, restrictedly."""
    try:
        batch = BatchUnpickler(file, encoding="bytes").load()
    except Exception as error:  # any failure of untrusted input is the file's fault
        raise _bad_batch(where, f"was refused or unreadable ({_one_line(error)})") from None
    if not isinstance(batch, dict):
        raise _bad_batch(where, f"holds a {type(batch).__name__}, not a dict")
    batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise _bad_batch(where, "has no uint8 'data' array")
    if data.shape[1] != 3 * 32 * 32:
        raise _bad_batch(where, f"has 'data' of shape {data.shape}, not (n, 3072)")
    labels = np.asarray(labels if labels is not None else [])
    if labels.dtype.kind not in "iu" or labels.shape != (len(data),):
        raise _bad_batch(where, f"has no {len(data)} integer 'labels'")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise _bad_batch(where, "has labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _read_archive(path: Path, names: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The named batches, read in one pass in stream order (a gzip stream cannot seek back)."""
    wanted = {f"{BATCH_DIR}/{name}": name for name in names}
    batches = {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                name = wanted.get(member.name)
                if name is None or not member.isfile():
                    continue
                file = archive.extractfile(member)
                batches[name] = read_batch(file, f"{path}:{member.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise UsageError(
            f"could not read '{path}' ({_one_line(error)}): delete it and download it again"
        ) from None
    return batches


def _read_folder(folder: Path, names: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    batches = {}
    for name in names:
        path = folder / name
        if path.is_file():
            try:
                with open(path, "rb") as file:
                    batches[name] = read_batch(file, str(path))
            except OSError as error:
                raise UsageError(
                    f"could not read '{path}' ({_one_line(error)}): make it readable, or "
                    f"delete it and download {ARCHIVE} again"
                ) from None
    return batches


def _find(root: Path) -> Path | None:
    for folder in (root / "cifar10", root):
        if (folder / ARCHIVE).is_file():
            return folder / ARCHIVE
        if (folder / BATCH_DIR).is_dir():
            return folder / BATCH_DIR
    return None


def _missing(root: Path, failure: str | None) -> UsageError:
    where = (
        f"put {ARCHIVE} (from {URL}) in '{root / 'cifar10'}', or its extracted "
        f"{BATCH_DIR}/ folder there"
    )
    if failure is None:
        return UsageError(
            f"cifar10 files not found: {where}; or set data.download=true to fetch it when online"
        )
    return UsageError(
        f"cifar10 files not found, and {failure}: {where}, or retry online with data.download=true"
    )


def load_cifar10(
    root: Path, split: str, download_missing: bool
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """uint8 (N, 3, 32, 32) images, int64 labels and the ten class names of CIFAR-10."""
    source = _find(root)
    if source is None and not download_missing:
        raise _missing(root, None)
    if source is None:
        try:
            source = download(Remote(ARCHIVE, (URL,), SHA256), root / "cifar10")
        except DownloadError as error:
            raise _missing(root, _one_line(error)) from None
    names = BATCHES[split]
    read = _read_folder if source.is_dir() else _read_archive
    batches = read(source, names)
    missing = [name for name in names if name not in batches]
    if missing:
        raise UsageError(
            f"'{source}' lacks {', '.join(missing)} (under {BATCH_DIR}/): it is not the "
            f"CIFAR-10 python archive; delete it and download {ARCHIVE} again"
        )
    images = np.concatenate([batches[name][0] for name in names])
    labels = np.concatenate([batches[name][1] for name in names])
    return images, labels, list(CLASS_NAMES)
