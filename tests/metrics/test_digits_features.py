"""Digits feature net: trains (a few steps), saves, loads, refuses tampering, extracts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from minmax.errors import UsageError
from minmax.metrics.features.digits import (
    DigitsNet,
    class_frequencies,
    default_digits_path,
    load_digits,
    load_feature_net,
    save_feature_net,
    train_feature_net,
)


def toy_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class c = a bright square at one of 10 positions, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 40, (n, 1, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        row, col = 2 + 12 * (c // 5), 2 + 5 * (c % 5)
        images[i, 0, row : row + 8, col : col + 4] = 255
    return images, labels


@pytest.fixture(scope="module")
def trained():
    images, labels = toy_digits(256, seed=0)
    test_images, test_labels = toy_digits(100, seed=1)
    return train_feature_net(
        images, labels, test_images, test_labels, epochs=1, seed=3, batch_size=32, max_steps=6
    )


def test_training_runs_and_reports_accuracy(trained):
    net, acc = trained
    assert isinstance(net, DigitsNet) and not net.training
    assert 0.0 <= acc <= 1.0


def test_training_is_seeded_and_leaves_global_rng_alone():
    images, labels = toy_digits(64, seed=2)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, _ = train_feature_net(images, labels, images, labels, 1, seed=5, batch_size=16, max_steps=2)
    assert torch.equal(torch.get_rng_state(), before)
    b, _ = train_feature_net(images, labels, images, labels, 1, seed=5, batch_size=16, max_steps=2)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_save_load_round_trip(trained, tmp_path):
    net, acc = trained
    path = tmp_path / "digits-toy.safetensors"
    meta = {"data": "toy", "test_accuracy": acc, "seed": 3, "epochs": 1}
    record = save_feature_net(net, path, meta)
    on_disk = json.loads(path.with_suffix(".json").read_text())
    assert on_disk == record
    assert on_disk["data"] == "toy" and len(on_disk["sha256"]) == 64
    loaded, loaded_meta = load_feature_net(path)
    assert loaded_meta == record
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        for a, b in zip(net(x), loaded(x), strict=True):
            assert torch.equal(a, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "digits-toy.json",
        "digits-toy.safetensors",
    ]  # no temporary files left behind


def test_tampered_weights_are_refused(trained, tmp_path):
    net, _ = trained
    path = tmp_path / "d.safetensors"
    save_feature_net(net, path, {"data": "toy"})
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(UsageError, match="SHA-256"):
        load_feature_net(path)


@pytest.mark.parametrize("sidecar", [b"{not json", b"\xff\xfe", b"[1, 2]"])
def test_a_broken_json_sidecar_is_a_usage_error(trained, tmp_path, sidecar):
    net, _ = trained
    path = tmp_path / "d.safetensors"
    save_feature_net(net, path, {"data": "toy"})
    path.with_suffix(".json").write_bytes(sidecar)
    with pytest.raises(UsageError, match="d.json"):
        load_feature_net(path)


def test_missing_net_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MINMAX_CACHE", str(tmp_path))
    assert default_digits_path() == tmp_path / "weights" / "digits-mnist.safetensors"
    with pytest.raises(UsageError, match="train one first"):
        load_feature_net(default_digits_path())


def test_extractor_features_probs_and_input_rules(trained, tmp_path):
    net, _ = trained
    path = tmp_path / "d.safetensors"
    save_feature_net(net, path, {"data": "toy"})
    extractor = load_digits(path)
    images, _ = toy_digits(5, seed=4)
    features, probs = extractor.run(torch.from_numpy(images), batch_size=2)
    assert features.shape == (5, 128) and features.dtype == np.float64
    assert (features >= 0).all()  # after ReLU
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert extractor.weights_sha256 == json.loads(path.with_suffix(".json").read_text())["sha256"]
    # Another size is resized (antialiased bilinear); RGB is refused.
    big = torch.from_numpy(images).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert extractor.features(big).shape == (5, 128)
    with pytest.raises(UsageError, match="1-channel"):
        extractor.features(torch.from_numpy(images).expand(-1, 3, -1, -1))


def test_bad_training_input_is_refused():
    images, labels = toy_digits(8, seed=0)
    with pytest.raises(ValueError, match="uint8"):
        train_feature_net(images.astype(np.float32), labels, images, labels, 1, 0, 4)
    with pytest.raises(ValueError, match="labels"):
        train_feature_net(images, labels + 10, images, labels, 1, 0, 4)


def test_class_frequencies():
    np.testing.assert_allclose(class_frequencies([0, 1, 1, 3], 4), [0.25, 0.5, 0.0, 0.25])
