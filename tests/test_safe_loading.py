"""Nothing minmax loads can run code: pickles placed where weights or arrays are expected are
refused with a clear error, and the code they carry never runs (a marker file never appears).

The audit at the end reads src/ so that a new ``torch.load`` or ``np.load`` without its safety
flag fails here, not in a user's hands.
"""

from __future__ import annotations

import ast
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import minmax
from minmax.data.images import is_image_dataset, load_images
from minmax.data.points import load_points
from minmax.errors import UsageError
from minmax.metrics import refstats
from minmax.metrics.features import digits, inception
from minmax.train.checkpoint import load_module

SRC = Path(minmax.__file__).parent
FLAGS = ("weights_only", "allow_pickle")


class Payload:
    """Unpickling this creates ``marker``: proof that the file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "code-ran"


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(UsageError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_payload_really_runs_code_when_unpickled(marker):
    """The control: without it every other test here could pass by accident."""
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


# Weights


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_pickle_as_checkpoint_weights_is_refused(tmp_path, marker, writer):
    path = tmp_path / "checkpoint" / "G.safetensors"
    path.parent.mkdir()
    if writer == "pickle":
        path.write_bytes(pickle.dumps({"weight": Payload(marker)}))
    else:
        torch.save({"weight": Payload(marker)}, path)
    message = refused(load_module, path.parent, "G", nn.Linear(2, 2))
    assert str(path) in message and not marker.exists()


def test_a_pickle_as_inception_weights_is_refused(tmp_path, marker, monkeypatch):
    path = tmp_path / "inception.pt"
    torch.save({"Conv2d_1a_3x3.conv.weight": Payload(marker)}, path)
    message = refused(inception.load_inception_net, path, allow_download=False)
    assert str(path) in message and "SHA-256" in message and not marker.exists()
    # Behind the hash check, torch.load(weights_only=True) refuses it as well.
    monkeypatch.setattr(inception, "WEIGHTS_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
    with pytest.raises(pickle.UnpicklingError, match="[Ww]eights only"):
        inception.load_inception_net(path, allow_download=False)
    assert not marker.exists()


def test_a_pickle_as_digits_feature_net_is_refused(tmp_path, marker):
    path = tmp_path / "digits.safetensors"
    path.write_bytes(pickle.dumps(Payload(marker)))
    meta = {"arch": digits.ARCH, "config": {}, "sha256": hashlib.sha256(path.read_bytes())}
    meta["sha256"] = meta["sha256"].hexdigest()  # a matching hash: the attacker wrote both
    path.with_suffix(".json").write_text(json.dumps(meta))
    assert str(path) in refused(digits.load_feature_net, path) and not marker.exists()


# Arrays


def pickled_npz(path: Path, marker: Path, **names: str) -> Path:
    """An .npz whose arrays (named by ``names``) hold a pickled Payload."""
    evil = np.array([Payload(marker)], dtype=object)
    np.savez(path, **{name: evil for name in names.values()})
    return path


@pytest.mark.parametrize("key", ["x", "y"])
def test_an_object_array_in_an_images_npz_is_refused(tmp_path, marker, key):
    path = tmp_path / "images.npz"
    arrays = {"x": np.zeros((2, 4, 4), np.uint8), "y": np.zeros(2, int)}
    arrays[key] = np.array([Payload(marker), 0], dtype=object)
    np.savez(path, **arrays)
    assert str(path) in refused(load_images, str(path)) and not marker.exists()


def test_an_object_array_in_a_keras_mnist_npz_is_refused(tmp_path, marker):
    pickled_npz(tmp_path / "mnist.npz", marker, a="x_train", b="y_train")
    message = refused(load_images, "mnist", root=str(tmp_path), download=False)
    assert str(tmp_path / "mnist.npz") in message and not marker.exists()


def test_object_arrays_as_points_are_refused(tmp_path, marker):
    pickled_npz(tmp_path / "points.npz", marker, a="x")
    assert not is_image_dataset(str(tmp_path / "points.npz"))
    assert "dtype=object" in refused(load_points, tmp_path / "points.npz")
    np.save(tmp_path / "points.npy", np.array([Payload(marker)], dtype=object))
    assert "dtype=object" in refused(load_points, tmp_path / "points.npy")
    assert not marker.exists()


def test_an_object_array_in_reference_statistics_is_refused(tmp_path, marker):
    key_parts = {"dataset": "d", "split": "test", "count": 2}
    path = refstats.cache_path(key_parts, tmp_path)
    path.parent.mkdir(parents=True)
    pickled_npz(path, marker, a="mu", b="sigma", c="features", d="key")

    def compute():
        raise AssertionError("a cache file exists: it must be read (and refused), not replaced")

    assert str(path) in refused(refstats.reference_stats, key_parts, compute, tmp_path)
    assert str(path) in refused(refstats.load_cached, path, extractor=None)
    refstats.is_cached_stats(path)  # looks at the names only
    assert not marker.exists()


def test_a_pickled_decode_cache_is_decoded_again_not_unpickled(tmp_path, marker):
    from PIL import Image

    (tmp_path / "d").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "d" / "a.png")
    first = load_images(str(tmp_path / "d"), root=str(tmp_path / "root"))
    (cache,) = (tmp_path / "root" / "cache").iterdir()
    np.save(cache / "images.npy", np.array([Payload(marker)], dtype=object))
    again = load_images(str(tmp_path / "d"), root=str(tmp_path / "root"))
    assert torch.equal(again.images, first.images) and not marker.exists()


# Loaded weights must be finite


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_checkpoint_weights_are_refused(tmp_path, bad):
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    tensors = {k: v.clone() for k, v in net.state_dict().items()}
    save_file(tensors, str(tmp_path / "G.safetensors"))
    load_module(tmp_path, "G", nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)))  # finite: fine
    tensors["1.running_var"][1] = bad
    save_file(tensors, str(tmp_path / "G.safetensors"))
    message = refused(load_module, tmp_path, "G", net)
    assert str(tmp_path / "G.safetensors") in message and "'1.running_var'" in message


# The audit: every loader in src/ keeps its safety flag


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name):
                keywords = {k.arg: k.value for k in node.keywords}
                yield owner.id, node.func.attr, keywords, node.lineno


def constant(node: ast.AST | None) -> object:
    return node.value if isinstance(node, ast.Constant) else "not a constant"


def test_src_loads_only_with_safety_flags():
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for owner, attr, keywords, line in calls(tree):
            where = f"{path.relative_to(SRC)}:{line}"
            weights_only, allow_pickle = (constant(keywords.get(k)) for k in FLAGS)
            if (owner, attr) == ("torch", "load") and weights_only is not True:
                problems.append(f"{where}: torch.load without weights_only=True")
            if owner in ("np", "numpy") and attr == "load" and allow_pickle is not False:
                problems.append(f"{where}: np.load without allow_pickle=False")
            if owner == "pickle" and attr in ("load", "loads", "Unpickler"):
                problems.append(f"{where}: pickle.{attr} (use a restricted Unpickler subclass)")
    assert problems == []


def test_the_only_unpickler_is_cifar10s_restricted_one():
    users = [
        path.relative_to(SRC).as_posix()
        for path in SRC.rglob("*.py")
        if "pickle.Unpickler" in path.read_text()
    ]
    assert users == ["data/cifar10.py"]
    from minmax.data.cifar10 import BatchUnpickler

    assert BatchUnpickler.find_class is not pickle.Unpickler.find_class
