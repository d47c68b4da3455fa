"""The memorisation check: copies (exact, noisy, partial) are flagged, new images are not;
its statistics against hand-computed values; the grid; evaluate/diagnose and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from minmax.cli import main
from minmax.errors import UsageError
from minmax.metrics import manifold
from minmax.metrics.features.digits import DigitsNet, load_digits, save_feature_net
from minmax.metrics.memorisation import (
    CLOSE_FLAG,
    RATIO_FLAG,
    check_generator,
    check_images,
    mann_whitney_z,
    memorisation,
    nearest_neighbours,
    save_pairs_grid,
)

N_TRAIN, N = 600, 200


def strokes(n: int, seed: int) -> np.ndarray:
    """(n, 1, 28, 28) uint8 'handwriting': two random thick line segments each, plus noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:28, 0:28].astype(np.float64)
    ink = np.zeros((n, 28, 28))
    for _ in range(2):
        a, b = rng.uniform(4, 24, (2, n, 2, 1, 1))
        width = rng.uniform(1.2, 2.5, (n, 1, 1))
        ab = b - a
        t = ((rows - a[:, 0]) * ab[:, 0] + (cols - a[:, 1]) * ab[:, 1]) / (ab**2).sum(1).clip(1)
        t = t.clip(0, 1)
        dist = np.hypot(rows - a[:, 0] - t * ab[:, 0], cols - a[:, 1] - t * ab[:, 1])
        ink = np.maximum(ink, (1 - dist / width).clip(0, 1))
    images = 255 * ink + rng.normal(0, 6, ink.shape)
    return images.clip(0, 255).round().astype(np.uint8)[:, None]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Training, held-out and fresh images, and an untrained (seeded) digits net: random
    convolutional features keep images that look alike close, which is all the check needs."""
    root = tmp_path_factory.mktemp("mem")
    torch.manual_seed(0)
    weights = root / "digits.safetensors"
    save_feature_net(DigitsNet(), weights, {"data": "untrained", "test_accuracy": 0.0, "seed": 0})
    train, held, fresh = strokes(N_TRAIN, 0), strokes(N, 1), strokes(N, 2)
    np.savez(root / "ref.npz", x=train[:, 0], x_test=held[:, 0])
    np.savez(root / "ref_no_test.npz", x=train[:, 0])
    np.savez(root / "copies.npz", x=train[:N, 0])
    np.savez(root / "held.npz", x=held[:, 0])
    np.savez(root / "many.npz", x=train[:300, 0])
    return root, weights, torch.from_numpy(train), torch.from_numpy(held), torch.from_numpy(fresh)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINMAX_CACHE", str(tmp_path / "cache"))


def _check(data, generated):
    root, weights, train, held, _ = data
    return check_generator(generated, train, held, load_digits(weights), N, seed=0)


def test_a_generator_that_returns_training_images_is_flagged(data):
    train = data[2]
    pick = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(0))[:N]
    result = _check(data, train[pick])
    assert result.flagged and result.verdict == "copies its training images"
    assert result.ratio < 0.01 and result.close_share == 1.0 and result.z_u < -10
    assert "copies its training images" in result.line() and f"{result.ratio:.3f}" in result.line()


def test_a_generator_that_returns_new_images_is_not(data):
    result = _check(data, data[4])  # fresh draws: neither trained on nor the held-out set
    assert not result.flagged and result.verdict == "no copying detected"
    assert 0.8 < result.ratio < 1.25 and abs(result.z_u) < 3 and result.close_share < CLOSE_FLAG


def test_near_copies_are_flagged(data):
    train = data[2]
    noise = torch.from_numpy(np.random.default_rng(7).normal(0, 8, (N, 1, 28, 28)))
    near = (train[:N].double() + noise).clamp(0, 255).round().to(torch.uint8)
    assert not torch.equal(near, train[:N])
    result = _check(data, near)
    assert result.flagged and result.ratio < RATIO_FLAG


def test_copying_a_part_of_the_outputs_is_flagged_by_the_close_share(data):
    train, fresh = data[2], data[4]
    mixed = torch.cat([train[:30], fresh[30:]])  # 15% copies: the median barely moves
    result = _check(data, mixed)
    assert result.ratio > RATIO_FLAG and result.close_share >= 0.15
    assert result.verdict == "copies part of its training images" and result.flagged


def test_nearest_neighbours_are_exact_across_chunks(monkeypatch):
    monkeypatch.setattr(manifold, "_CHUNK_ELEMENTS", 7 * 50)  # 7 query rows per chunk
    rng = np.random.default_rng(0)
    query, train = rng.normal(size=(23, 5)), rng.normal(size=(50, 5))
    distances, index = nearest_neighbours(query, train)
    brute = np.linalg.norm(query[:, None] - train[None], axis=2)
    np.testing.assert_array_equal(index.numpy(), brute.argmin(1))
    np.testing.assert_allclose(distances.numpy(), brute.min(1), rtol=1e-9)


def test_statistics_against_hand_computed_values():
    # U counts pairs with d(g) > d(h), ties as a half: g = 1 beats 0.5 and 0.1 (2), g = 3
    # beats 2, 0.5, 0.1 and ties 3 (3.5): U = 5.5 of m n = 8.
    assert mann_whitney_z([1.0, 3.0], [3.0, 2.0, 0.5, 0.1]) == pytest.approx(
        (5.5 - 4) / math.sqrt(2 * 4 * 7 / 12)
    )
    assert mann_whitney_z([1.0, 2.0], [3.0, 4.0]) == pytest.approx(-2 / math.sqrt(20 / 12))
    # 1-D features, training set {0}: distances are |x|.
    held = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    result = memorisation(np.zeros((1, 1)), held, np.array([[0.5], [1.0], [-1.5]]))
    assert result.median_generated == 1.0 and result.median_held_out == 3.0
    assert result.ratio == pytest.approx(1 / 3) and result.flagged
    assert result.close_distance == pytest.approx(1.04)  # linear interpolation, as numpy
    assert result.close_share == pytest.approx(2 / 3)  # 0.5 and 1.0 are below 1.04
    even = memorisation(np.zeros((1, 1)), held[:4], np.array([[1.0], [2.0]]))
    assert even.median_generated == 1.5 and even.median_held_out == 2.5  # middle pair's mean
    assert result.nearest.tolist() == [0, 0, 0]


def test_the_grid_shows_the_closest_pairs(data, tmp_path):
    root, weights, train, held, fresh = data
    generated = torch.cat([fresh[:20], train[5:9]])  # 4 copies: the first row
    result = _check(data, torch.cat([generated, fresh[20:]])[:N])
    path = save_pairs_grid(torch.cat([generated, fresh[20:]])[:N], train, result,
                           tmp_path / "pairs.png", n_pairs=12)  # fmt: skip
    grid = np.asarray(Image.open(path))
    assert grid.shape == (4 * 30 + 2, 8 * 30 + 2)  # 2 blocks of 2 rows, 8 columns, 2px pads
    # The copies come first, each above its nearest training image: the same picture.
    top, below = grid[2:30, 2 : 2 + 4 * 30], grid[32:60, 2 : 2 + 4 * 30]
    np.testing.assert_array_equal(top, below)
    assert sorted(result.nearest[np.argsort(result.distances)[:4]].tolist()) == [5, 6, 7, 8]


def test_bad_images_are_refused_in_one_line(data):
    root, weights, train, held, fresh = data
    with pytest.raises(UsageError, match="no generated images"):
        check_images(train[:0], train, held)
    with pytest.raises(UsageError, match="image shapes differ"):
        check_images(train[:, :, :14], train, held)
    with pytest.raises(UsageError, match="image shapes differ"):
        check_images(train.expand(-1, 3, -1, -1), train, held)
    with pytest.raises(UsageError, match="asks for 500 held-out images, there are 200"):
        check_generator(train[:500], train, held, load_digits(weights), 500)
    with pytest.raises(UsageError, match="at least 2"):
        memorisation(np.zeros((3, 4)), np.zeros((5, 4)), np.zeros((1, 4)))
    with pytest.raises(UsageError, match="feature sizes differ"):
        memorisation(np.zeros((3, 4)), np.ones((5, 4)), np.ones((5, 3)))


def test_evaluate_mem_flags_training_images_not_test_images(data, capsys):
    root, weights = data[0], data[1]
    args = ["--ref", str(root / "ref.npz"), "--metrics", "mem0.2k", "--features", str(weights)]
    assert main(["evaluate", str(root / "copies.npz"), *args]) == 0
    out = capsys.readouterr().out
    assert "mem0.2k_digits" in out and "copies its training images" in out, out
    assert main(["evaluate", str(root / "held.npz"), *args]) == 0
    out = capsys.readouterr().out
    assert "ratio 1.0000" in out and "no copying detected" in out, out  # the held-out set itself


@pytest.mark.parametrize(
    "source, extra, message",
    [
        ("copies.npz", ["--ref", "ref_no_test.npz", "--metrics", "mem0.1k"], "train and test"),
        ("copies.npz", ["--ref", "ref.npz", "--metrics", "mem0.2k", "--n", "300"], "holds 200"),
        ("many.npz", ["--ref", "ref.npz", "--metrics", "mem0.25k"], "needs 250 held-out"),
    ],
)
def test_evaluate_mem_bad_input_is_one_line_exit_2(data, capsys, source, extra, message):
    root, weights = data[0], data[1]
    extra = [str(root / e) if e.endswith(".npz") else e for e in extra]
    code = main(["evaluate", str(root / source), *extra, "--features", str(weights)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


@pytest.fixture(scope="module")
def image_run(data, tmp_path_factory):
    """A tiny DCGAN run (a few steps) on the stroke images, with a test split."""
    root = data[0]
    run = tmp_path_factory.mktemp("run") / "run"
    overrides = ["model.conditional=false", "model.g_channels=8", "model.d_channels=8",
                 "model.z_dim=8", "train.batch_size=16", "train.threads=1", "train.kimg=0.05",
                 "eval.plots=false"]  # fmt: skip
    data_args = ["--preset", "mnist-dcgan", "--data", str(root / "ref.npz")]
    assert main(["train", "--quiet", *data_args, "--out", str(run), *overrides]) == 0
    return run


def test_diagnose_memorisation_writes_grid_json_and_a_verdict(data, image_run, capsys, tmp_path):
    weights = data[1]
    out = tmp_path / "diag"
    args = ["diagnose", str(image_run), "--memorisation", "--n", "100", "--features", str(weights)]
    assert main([*args, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("memorisation: ") and "median distance to the training" in lines[0]
    assert (out / "memorisation.png").is_file()
    record = json.loads((out / "memorisation.json").read_text())
    assert record["n_generated"] == record["n_held_out"] == 100 and record["n_train"] == N_TRAIN
    assert record["extractor"]["name"] == "digits" and "(test)" in record["held_out"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--memorisation", "--n", "500"], "asks for 500 held-out images"),
        (["--features", "digits"], "--features is for --memorisation"),
    ],
)
def test_diagnose_memorisation_bad_input_is_one_line_exit_2(
    data, image_run, capsys, tmp_path, extra, message
):
    out = tmp_path / "diag"
    code = main(["diagnose", str(image_run), *extra, "--out", str(out)]
                + (["--features", str(data[1])] if "--memorisation" in extra else []))  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists()
