"""Named image datasets without the network: SHA-256 checked downloads from file:// URLs,
MNIST's IDX and Keras files, and CIFAR-10's archive read through a restricted unpickler."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from minmax.data import cifar10, download, mnist
from minmax.data.download import DownloadError, Remote, default_root
from minmax.data.images import load_images
from minmax.errors import UsageError


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


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


# download.py


def test_default_root_reads_the_environment_per_call(monkeypatch, tmp_path):
    monkeypatch.setenv("MINMAX_CACHE", str(tmp_path / "a"))
    assert default_root() == tmp_path / "a"
    monkeypatch.delenv("MINMAX_CACHE")
    assert default_root() == Path.home() / ".cache" / "minmax"


def test_download_from_file_url(tmp_path):
    source = tmp_path / "served.bin"
    source.write_bytes(b"payload" * 1000)
    remote = Remote("got.bin", (source.as_uri(),), sha256(source.read_bytes()))
    path = download.download(remote, tmp_path / "out")
    assert path == tmp_path / "out" / "got.bin" and path.read_bytes() == source.read_bytes()
    assert files_in(tmp_path / "out") == ["got.bin"], "no temporary file left behind"


def test_download_wrong_hash_is_rejected_and_not_kept(tmp_path):
    source = tmp_path / "served.bin"
    source.write_bytes(b"tampered")
    remote = Remote("got.bin", (source.as_uri(),), sha256(b"original"))
    with pytest.raises(DownloadError, match="sha256"):
        download.download(remote, tmp_path / "out")
    assert files_in(tmp_path / "out") == []


def test_download_falls_back_to_the_next_mirror(tmp_path):
    bad, good = tmp_path / "bad.bin", tmp_path / "good.bin"
    bad.write_bytes(b"wrong")
    good.write_bytes(b"right")
    missing = (tmp_path / "missing.bin").as_uri()
    remote = Remote("f.bin", (missing, bad.as_uri(), good.as_uri()), sha256(b"right"))
    assert download.download(remote, tmp_path / "out").read_bytes() == b"right"


def test_download_keeps_a_verified_file(tmp_path, monkeypatch):
    (tmp_path / "f.bin").write_bytes(b"right")
    monkeypatch.setattr(download, "urlopen", lambda *a, **k: pytest.fail("fetched again"))
    remote = Remote("f.bin", ("https://example.invalid/f.bin",), sha256(b"right"))
    assert download.download(remote, tmp_path).read_bytes() == b"right"


# MNIST / Fashion-MNIST


def idx(array: np.ndarray) -> bytes:
    """The IDX encoding: 0, 0, type 0x08 (ubyte), rank, big-endian sizes, then the bytes."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def mnist_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


def write_idx_pair(folder: Path, split: str, n: int, seed=0, gz=True) -> tuple:
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = mnist_like(n, seed)
    for stem, array in zip(mnist.STEMS[split], (images, labels), strict=True):
        data = idx(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (folder / stem).write_bytes(data)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_mnist_from_idx_files(tmp_path, name, gz):
    images, labels = write_idx_pair(tmp_path / name, "train", 5, gz=gz)
    test_images, _ = write_idx_pair(tmp_path / name, "test", 3, seed=1, gz=gz)
    dataset = load_images(name, root=str(tmp_path), download=False)
    assert dataset.name == name and dataset.shape == (1, 28, 28) and len(dataset) == 5
    assert np.array_equal(dataset.images[:, 0].numpy(), images)
    assert dataset.labels.tolist() == labels.tolist() and dataset.n_classes == 10
    assert dataset.class_names == mnist.CLASS_NAMES[name]
    test = load_images(name, root=str(tmp_path), split="test", download=False)
    assert np.array_equal(test.images[:, 0].numpy(), test_images)


def test_mnist_resize_and_rgb(tmp_path):
    write_idx_pair(tmp_path / "mnist", "train", 4)
    dataset = load_images("mnist", root=str(tmp_path), resolution=32, channels=3)
    assert dataset.shape == (3, 32, 32) and dataset.images.dtype == torch.uint8


def test_mnist_truncated_file_is_named(tmp_path):
    write_idx_pair(tmp_path / "mnist", "train", 4, gz=False)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    message = usage_error("mnist", root=str(tmp_path), download=False)
    assert str(path) in message and "truncated" in message


def test_mnist_wrong_magic_and_broken_gzip(tmp_path):
    write_idx_pair(tmp_path / "mnist", "train", 4)
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx(np.zeros((4, 2), np.uint8))))  # rank 2, not 1
    message = usage_error("mnist", root=str(tmp_path), download=False)
    assert str(labels) in message and "not an IDX file" in message
    labels.write_bytes(b"\x1f\x8b garbage")
    assert str(labels) in usage_error("mnist", root=str(tmp_path), download=False)


def test_mnist_image_and_label_counts_must_match(tmp_path):
    write_idx_pair(tmp_path / "mnist", "train", 4)
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx(np.zeros(3, np.uint8)))
    )
    message = usage_error("mnist", root=str(tmp_path), download=False)
    assert "4 images" in message and "3 labels" in message


@pytest.mark.parametrize("in_subfolder", [False, True])
def test_mnist_keras_npz(tmp_path, in_subfolder):
    (train, y_train), (test, y_test) = mnist_like(4, 0), mnist_like(2, 1)
    folder = tmp_path / "mnist" if in_subfolder else tmp_path
    folder.mkdir(exist_ok=True)
    arrays = {"x_train": train, "y_train": y_train.astype(np.uint8), "x_test": test}
    np.savez(folder / "mnist.npz", **arrays, y_test=y_test.astype(np.uint8))
    dataset = load_images("mnist", root=str(tmp_path), download=False)
    assert np.array_equal(dataset.images[:, 0].numpy(), train)
    assert dataset.labels.dtype == torch.int64 and dataset.labels.tolist() == y_train.tolist()
    assert len(load_images("mnist", root=str(tmp_path), split="test", download=False)) == 2
    # mnist.npz is not Fashion-MNIST
    assert "fashion-mnist.npz" in usage_error("fashion-mnist", root=str(tmp_path), download=False)


def test_mnist_missing_files_say_what_to_put_where(tmp_path):
    message = usage_error("mnist", root=str(tmp_path), download=False)
    for words in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "data.download"):
        assert words in message
    assert str(tmp_path / "mnist") in message and "mnist.npz" in message
    assert "t10k-images-idx3-ubyte.gz" in usage_error(
        "mnist", root=str(tmp_path), split="test", download=False
    )


def serve_mnist(folder: Path, monkeypatch, name="mnist", corrupt: str | None = None) -> tuple:
    """Official-looking .gz files under a file:// mirror, with their hashes in mnist.SHA256."""
    images, labels = write_idx_pair(folder, "train", 5)
    hashes = {file.name: sha256(file.read_bytes()) for file in folder.iterdir()}
    if corrupt:
        (folder / corrupt).write_bytes(gzip.compress(b"evil"))
    monkeypatch.setitem(mnist.MIRRORS, name, (folder.as_uri() + "/",))
    monkeypatch.setitem(mnist.SHA256, name, hashes)
    return images, labels


def test_mnist_downloads_missing_files(tmp_path, monkeypatch):
    images, labels = serve_mnist(tmp_path / "mirror", monkeypatch)
    root = tmp_path / "root"
    dataset = load_images("mnist", root=str(root))
    assert np.array_equal(dataset.images[:, 0].numpy(), images)
    assert dataset.labels.tolist() == labels.tolist()
    assert files_in(root / "mnist") == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


def test_mnist_download_with_wrong_hash_is_refused(tmp_path, monkeypatch):
    serve_mnist(tmp_path / "mirror", monkeypatch, corrupt="train-images-idx3-ubyte.gz")
    root = tmp_path / "root"
    message = usage_error("mnist", root=str(root))
    assert "sha256" in message and "train-images-idx3-ubyte.gz" in message
    assert "retry online" in message
    assert files_in(root / "mnist") == [], "the rejected file is not left in place"


def test_mnist_offline_download_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setitem(mnist.MIRRORS, "fashion-mnist", ("https://example.invalid/",))
    message = usage_error("fashion-mnist", root=str(tmp_path))
    assert "could not download" in message and str(tmp_path / "fashion-mnist") in message


def test_sha256_constants_are_well_formed():
    hashes = [*mnist.SHA256["mnist"].values(), *mnist.SHA256["fashion-mnist"].values()]
    assert len(set(hashes)) == 8
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in [*hashes, cifar10.SHA256])


# CIFAR-10


class Py2Pickler(pickle._Pickler):
    """Pickles like CIFAR's Python 2 cPickle did: str and bytes as byte strings (protocol 2)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_byte_string(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_byte_string
    dispatch[str] = save_byte_string


def cifar_batch(n: int, seed: int, numpy_1_names=False) -> tuple[bytes, np.ndarray, list]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, n).tolist()
    buffer = io.BytesIO()
    batch = {"batch_label": f"batch {seed}", "labels": labels, "data": data, "filenames": ["a"]}
    Py2Pickler(buffer, protocol=2).dump(batch)
    blob = buffer.getvalue()
    if numpy_1_names:  # as the official files spell it
        blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    return blob, data, labels


def write_archive(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, blob in members.items():
            info = tarfile.TarInfo(f"{cifar10.BATCH_DIR}/{name}")
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
    return path


def cifar_members(n=2) -> tuple[dict[str, bytes], dict[str, tuple]]:
    names = [*cifar10.BATCHES["train"], *cifar10.BATCHES["test"]]
    batches = {
        name: cifar_batch(n, seed, numpy_1_names=seed % 2 == 0) for seed, name in enumerate(names)
    }
    return {name: blob for name, (blob, _, _) in batches.items()}, batches


def test_cifar10_from_archive(tmp_path):
    members, batches = cifar_members()
    write_archive(tmp_path / "cifar10" / cifar10.ARCHIVE, {"readme.html": b"<p>", **members})
    dataset = load_images("cifar10", root=str(tmp_path), download=False)
    assert dataset.shape == (3, 32, 32) and len(dataset) == 10 and dataset.n_classes == 10
    assert dataset.class_names[0] == "airplane" and dataset.class_names[-1] == "truck"
    first, labels = batches["data_batch_1"][1:]
    assert np.array_equal(dataset.images[0, 0].numpy().ravel(), first[0, :1024]), "R plane first"
    assert np.array_equal(dataset.images[:2].numpy().reshape(2, -1), first)
    expected = [label for name in cifar10.BATCHES["train"] for label in batches[name][2]]
    assert dataset.labels.tolist() == expected
    test = load_images("cifar10", root=str(tmp_path), split="test", download=False, channels=1)
    assert test.shape == (1, 32, 32) and test.labels.tolist() == batches["test_batch"][2]


def test_cifar10_from_extracted_folder(tmp_path):
    members, batches = cifar_members()
    folder = tmp_path / cifar10.BATCH_DIR
    folder.mkdir()
    for name, blob in members.items():
        (folder / name).write_bytes(blob)
    dataset = load_images("cifar10", root=str(tmp_path), split="test", download=False)
    assert np.array_equal(dataset.images.numpy().reshape(2, -1), batches["test_batch"][1])


class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    members, _ = cifar_members()
    members["data_batch_3"] = pickle.dumps({"data": Evil(marker), "labels": []}, protocol=2)
    archive = write_archive(tmp_path / cifar10.ARCHIVE, members)
    message = usage_error("cifar10", root=str(tmp_path), download=False)
    assert "data_batch_3" in message and str(archive) in message
    assert f"global '{os.system.__module__}.system' is not allowed" in message
    assert not marker.exists()


def test_cifar10_unpickler_admits_only_numpy_arrays():
    for payload in (pickle.dumps(eval, protocol=2), pickle.dumps(np.float64(1.0), protocol=2)):
        with pytest.raises(pickle.UnpicklingError, match="not allowed"):
            cifar10.BatchUnpickler(io.BytesIO(payload)).load()


@pytest.mark.parametrize(
    "batch, words",
    [
        ([1, 2], "not a dict"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "no uint8 'data'"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "not (n, 3072)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 integer 'labels'"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "outside 0..9"),
    ],
)
def test_cifar10_malformed_batches(tmp_path, batch, words):
    members, _ = cifar_members()
    members["test_batch"] = pickle.dumps(batch, protocol=3)
    write_archive(tmp_path / cifar10.ARCHIVE, members)
    message = usage_error("cifar10", root=str(tmp_path), split="test", download=False)
    assert "test_batch" in message and words in message


def test_cifar10_archive_missing_a_batch(tmp_path):
    members, _ = cifar_members()
    del members["data_batch_4"]
    write_archive(tmp_path / cifar10.ARCHIVE, members)
    message = usage_error("cifar10", root=str(tmp_path), download=False)
    assert "lacks data_batch_4" in message


def test_cifar10_missing_and_downloaded(tmp_path, monkeypatch):
    message = usage_error("cifar10", root=str(tmp_path / "root"), download=False)
    assert cifar10.ARCHIVE in message and str(tmp_path / "root" / "cifar10") in message
    members, _ = cifar_members()
    served = write_archive(tmp_path / "mirror" / cifar10.ARCHIVE, members)
    monkeypatch.setattr(cifar10, "URL", served.as_uri())
    monkeypatch.setattr(cifar10, "SHA256", sha256(b"something else"))
    assert "sha256" in usage_error("cifar10", root=str(tmp_path / "root"))
    assert files_in(tmp_path / "root" / "cifar10") == []
    monkeypatch.setattr(cifar10, "SHA256", sha256(served.read_bytes()))
    assert len(load_images("cifar10", root=str(tmp_path / "root"))) == 10
    assert files_in(tmp_path / "root" / "cifar10") == [cifar10.ARCHIVE]
