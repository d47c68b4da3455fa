"""minmax evaluate end to end on tiny data, with a few-step digits net; names and bad input."""

import json

import numpy as np
import pytest

from minmax.cli import main
from minmax.errors import UsageError
from minmax.evaluate import evaluate, label, parse_metrics
from minmax.metrics.features.digits import save_feature_net, train_feature_net


def digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class c = a bright bar at one of 10 positions, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        row, col = 2 + 12 * (c // 5), 2 + 5 * (c % 5)
        images[i, row : row + 8, col : col + 4] = 255
    return images, labels


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    x, y = digits(120, 0)
    xt, yt = digits(60, 1)
    net, accuracy = train_feature_net(x[:, None], y, xt[:, None], yt, epochs=1, seed=0,
                                      batch_size=30, max_steps=8)  # fmt: skip
    weights = root / "digits.safetensors"
    save_feature_net(net, weights, {"data": "toy", "test_accuracy": accuracy, "seed": 0})
    np.savez(root / "ref.npz", x=x, y=y)
    np.savez(root / "same.npz", x=x[:100])
    noise = np.random.default_rng(5).integers(0, 256, (100, 28, 28)).astype(np.uint8)
    np.savez(root / "noise.npz", x=noise)
    return root, weights


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINMAX_CACHE", str(tmp_path / "cache"))


def test_metric_names_carry_counts_and_labels():
    specs = parse_metrics("fid10k, kid2.5k,pr1k")
    assert [(s.kind, s.n) for s in specs] == [("fid", 10000), ("kid", 2500), ("pr", 1000)]
    assert [s.n for s in parse_metrics("fid10k,is50k", n=300)] == [300, 300]

    class Net:
        name = "digits"

    assert label(specs[0], Net()) == "fd10k_digits"  # never "FID" for another network
    Net.name = "inception-2015-12-05"
    assert label(specs[0], Net()) == "fid10k"
    for bad in ["fid", "fud10k", "", "fid0k"]:
        with pytest.raises(UsageError):
            parse_metrics(bad)


def test_scores_order_the_data_the_way_they_should(setup):
    root, weights = setup
    names = "fid1k,kid1k,pr1k,dc1k,is1k,census1k"
    args = dict(features=str(weights), n=100, root=str(root))
    same = {r["metric"]: r for r in evaluate(str(root / "same.npz"), str(root / "ref.npz"), names,
                                             **args)}  # fmt: skip
    noise = {r["metric"]: r for r in evaluate(str(root / "noise.npz"), str(root / "ref.npz"),
                                              names, **args)}  # fmt: skip
    assert same["fd0.1k_digits"]["value"] < 0.1 * noise["fd0.1k_digits"]["value"]
    assert same["kid0.1k_digits"]["value"] < noise["kid0.1k_digits"]["value"]
    assert same["pr0.1k_digits"]["precision"] > 0.9 > noise["pr0.1k_digits"]["precision"]
    assert same["census0.1k_digits"]["n_samples"] == 100
    protocol = same["fd0.1k_digits"]["protocol"]
    assert protocol["extractor"]["name"] == "digits" and "resize" in protocol["extractor"]
    assert "120 images" in protocol["reference"]


def test_reference_statistics_are_cached(setup, tmp_path):
    root, weights = setup
    evaluate(str(root / "same.npz"), str(root / "ref.npz"), "fid1k", str(weights), n=50)
    files = list((tmp_path / "cache" / "refstats").glob("*.npz"))
    assert len(files) == 1
    before = files[0].stat().st_mtime_ns
    evaluate(str(root / "noise.npz"), str(root / "ref.npz"), "fid1k", str(weights), n=50)
    assert files[0].stat().st_mtime_ns == before


def test_bad_input_is_one_line(setup, capsys):
    root, weights = setup
    ref = str(root / "ref.npz")
    with pytest.raises(UsageError, match="fewer than the 1000"):
        evaluate(str(root / "same.npz"), ref, "fid1k", str(weights))
    rgb = root / "rgb.npz"
    np.savez(rgb, x=np.zeros((10, 28, 28, 3), np.uint8))
    with pytest.raises(UsageError, match="1-channel images, got 3"):
        evaluate(str(rgb), ref, "fid1k", str(weights), n=10)
    with pytest.raises(UsageError, match="not found"):
        evaluate(str(root / "same.npz"), ref, "fid1k", str(root / "missing.safetensors"))
    code = main(["evaluate", str(root / "same.npz"), "--ref", ref, "--metrics", "fid10k",
                 "--features", str(weights), "--n", "1000"])  # fmt: skip
    assert code == 2 and "fewer than" in capsys.readouterr().err


def test_evaluate_a_run_appends_to_its_metrics(setup, tmp_path, capsys):
    root, weights = setup
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--preset", "mnist-dcgan", "--data", str(root / "ref.npz"),
                 "--out", str(run), "train.kimg=0.05", "model.g_channels=4",
                 "model.d_channels=4", "eval.plots=false"]) == 0  # fmt: skip
    assert main(["evaluate", str(run), "--ref", str(root / "ref.npz"), "--features",
                 str(weights), "--metrics", "fid1k,census1k", "--n", "64"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "fd0.064k_digits" in out and "extractor: digits" in out
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [x for x in lines if x["kind"] == "eval"]
    assert [x["metric"] for x in evals] == ["fd0.064k_digits", "census0.064k_digits"]
    assert evals[0]["protocol"]["generated"].endswith("(G_ema, seed 0)")


def test_scores_during_training(setup, tmp_path):
    root, weights = setup
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--preset", "mnist-dcgan", "--data", str(root / "ref.npz"),
                 "--out", str(run), "train.kimg=0.2", "train.batch_size=16",
                 "model.g_channels=4", "model.d_channels=4", "eval.plots=false",
                 "eval.metrics=fid0.05k,census0.05k", "eval.every_kimg=0.08",
                 f"eval.features={weights}", "eval.reference_split=train"]) == 0  # fmt: skip
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    fd = [x for x in lines if x["kind"] == "eval" and x["metric"] == "fd0.05k_digits"]
    assert [round(x["kimg"], 3) for x in fd] == [0.08, 0.16, 0.208]  # two marks, then the end
    assert lines[-1]["kind"] == "final" and lines[-1]["fd0.05k_digits"] == fd[-1]["value"]


def test_training_refuses_a_missing_feature_net_before_writing(setup, tmp_path, capsys):
    root, _ = setup
    out = tmp_path / "run"
    code = main(["train", "--quiet", "--preset", "mnist-dcgan", "--data", str(root / "ref.npz"),
                 "--out", str(out), "eval.metrics=fid1k",
                 f"eval.features={tmp_path / 'none.safetensors'}"])  # fmt: skip
    assert code == 2 and "not found" in capsys.readouterr().err and not out.exists()


def test_cached_statistics_serve_as_the_reference(setup, tmp_path):
    root, weights = setup
    (direct,) = evaluate(str(root / "noise.npz"), str(root / "ref.npz"), "fid1k", str(weights),
                         n=50)  # fmt: skip
    (cached,) = list((tmp_path / "cache" / "refstats").glob("*.npz"))
    (again,) = evaluate(str(root / "noise.npz"), str(cached), "fid1k", str(weights), n=50)
    assert again["value"] == direct["value"] and "cached" in again["protocol"]["reference"]
    # Statistics made with another network are refused, not silently mis-scored.
    x, y = digits(60, 7)
    other, acc = train_feature_net(x[:, None], y, x[:, None], y, epochs=1, seed=1,
                                   batch_size=30, max_steps=2)  # fmt: skip
    save_feature_net(other, tmp_path / "other.safetensors", {"data": "toy", "test_accuracy": acc})
    with pytest.raises(UsageError, match="reference/extractor mismatch"):
        evaluate(str(root / "noise.npz"), str(cached), "fid1k", str(tmp_path / "other.safetensors"),
                 n=50)  # fmt: skip
