"""The stacked-MNIST mode metric, with a tiny exact "classifier" that reads a channel's level."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from minmax.cli import main
from minmax.errors import UsageError
from minmax.evaluate import ImageSet, format_table, parse_metrics, score_images
from minmax.metrics.features import FeatureExtractor, resize_torch_bilinear
from minmax.metrics.features.digits import DigitsNet, save_feature_net
from minmax.metrics.stacked_modes import (
    channel_digits,
    kl_to_uniform,
    stacked_mode_report,
    stacked_modes,
)

LEVELS = torch.arange(10, dtype=torch.float64) * 25 + 5  # digit d: a constant channel of 25d+5


class LevelNet(nn.Module):
    """logits_k = -(mean pixel - level_k)^2: exact on constant channels."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        value = (x.double().mean(dim=(1, 2, 3)) + 1) * 127.5
        return value[:, None], -((value[:, None] - LEVELS) ** 2)


class LevelDigits(FeatureExtractor):
    name = "digits"
    weights_sha256 = "0" * 64
    input_size = (28, 28)
    channels = 1
    dim = 1
    num_classes = 10
    resize = "bilinear to 28x28"

    def __init__(self) -> None:
        super().__init__(LevelNet())

    def prepare(self, images: Tensor) -> Tensor:
        return resize_torch_bilinear(images.float() / 127.5 - 1, self.input_size, antialias=True)


def stacked(digits, side: int = 28) -> Tensor:
    """uint8 (N, 3, side, side): channel c constant at the level of digits[:, c]."""
    digits = torch.as_tensor(digits)
    levels = LEVELS[digits].to(torch.uint8)
    return levels[:, :, None, None].expand(-1, -1, side, side).contiguous()


ALL_TRIPLES = torch.tensor([[m // 100, m // 10 % 10, m % 10] for m in range(1000)])


def test_channels_are_read_in_order():
    assert channel_digits(stacked([[1, 2, 3], [0, 0, 9]]), LevelDigits()).tolist() == [
        [1, 2, 3],
        [0, 0, 9],
    ]
    report = stacked_modes([[1, 2, 3]])
    assert report["counts"][123] == 1 and sum(report["counts"]) == 1


def test_a_perfectly_uniform_set_covers_everything_with_zero_kl():
    report = stacked_mode_report(stacked(ALL_TRIPLES.repeat(3, 1)), LevelDigits())
    assert report["modes_covered"] == report["n_modes"] == 1000
    assert report["n_samples"] == 3000 and set(report["counts"]) == {3}
    assert abs(report["kl_to_uniform"]) < 1e-12


def test_a_collapsed_set():
    ten = ALL_TRIPLES[torch.arange(0, 1000, 100)]  # 10 distinct triples, 26 samples each
    report = stacked_mode_report(stacked(ten.repeat(26, 1)), LevelDigits())
    assert report["modes_covered"] == 10
    assert report["kl_to_uniform"] == pytest.approx(math.log(100), abs=1e-12)


def test_kl_against_a_hand_computed_case():
    # p = (1/2, 1/4, 1/4) on three of 1,000 modes; the 997 empty ones contribute 0.
    counts = np.zeros(1000)
    counts[[0, 1, 2]] = [2, 1, 1]
    hand = 0.5 * math.log(0.5 * 1000) + 2 * 0.25 * math.log(0.25 * 1000)
    assert kl_to_uniform(counts) == pytest.approx(hand, abs=1e-12)
    assert hand == pytest.approx(math.log(1000) - 1.5 * math.log(2), abs=1e-12)  # log K - H(p)


def test_channel_kls_split_the_kl_from_the_channels_dependence():
    # Channel 0 always 7: its shares alone cost log 10, the others are uniform, and the
    # channels are independent, so the total KL is exactly the sum.
    triples = ALL_TRIPLES[ALL_TRIPLES[:, 0] == 7]
    report = stacked_modes(triples.numpy())
    assert report["channel_kl"] == pytest.approx([math.log(10), 0.0, 0.0], abs=1e-12)
    assert report["kl_to_uniform"] == pytest.approx(sum(report["channel_kl"]), abs=1e-12)
    # Channels 1 and 2 always equal: uniform shares each, the KL is all dependence.
    same = ALL_TRIPLES[ALL_TRIPLES[:, 1] == ALL_TRIPLES[:, 2]]
    report = stacked_modes(same.numpy())
    assert report["channel_kl"] == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)
    assert report["kl_to_uniform"] == pytest.approx(math.log(10), abs=1e-12)


def test_sampling_alone_costs_about_k_minus_1_over_2n():
    draws = np.random.default_rng(0).integers(0, 1000, 26_000)
    kl = kl_to_uniform(np.bincount(draws, minlength=1000))
    assert kl == pytest.approx(999 / (2 * 26_000), abs=0.004)  # its sd is ~0.0009


def test_32_pixel_images_are_resized_and_accepted():
    report = stacked_mode_report(stacked(ALL_TRIPLES[:50], side=32), LevelDigits())
    assert report["modes_covered"] == 50


@pytest.mark.parametrize(
    "images", [torch.zeros(4, 1, 28, 28), torch.zeros(4, 3, 64, 64), torch.zeros(4, 3, 28, 32)]
)
def test_bad_images_are_one_line(images):
    with pytest.raises(UsageError) as info:
        channel_digits(images.to(torch.uint8), LevelDigits())
    assert "3-channel 28x28" in str(info.value) and "\n" not in str(info.value)


def test_bad_digits_and_a_non_classifier_are_refused():
    with pytest.raises(ValueError, match="0..9"):
        stacked_modes([[1, 2, 10]])
    not_a_classifier = LevelDigits()
    not_a_classifier.num_classes = 0
    with pytest.raises(UsageError, match="needs the digits classifier"):
        channel_digits(stacked([[1, 2, 3]]), not_a_classifier)


def test_score_images_names_the_metric_and_reads_no_reference():
    fake = ImageSet(stacked(ALL_TRIPLES), None, "every triple once")
    specs = parse_metrics("modes1k,modes0.5k")
    records = score_images(fake, "no-such-reference", specs, LevelDigits())
    assert [r["metric"] for r in records] == ["modes1k_digits", "modes0.5k_digits"]
    assert records[0]["modes_covered"] == 1000 and records[1]["modes_covered"] == 500
    assert records[1]["value"] == records[1]["kl_to_uniform"] == pytest.approx(math.log(2))
    assert "uniform" in records[0]["protocol"]["reference"]
    table = format_table(records)
    assert "1000/1000 modes, KL to uniform 0.0000 nats" in table and "[1, 1" not in table


@pytest.fixture
def digits_net(tmp_path, monkeypatch):
    monkeypatch.setenv("MINMAX_CACHE", str(tmp_path / "cache"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = DigitsNet().eval()
    path = tmp_path / "digits.safetensors"
    save_feature_net(net, path, {"data": "toy", "test_accuracy": 0.1, "seed": 0})
    return path


def test_the_command_scores_stacked_images_and_refuses_others(tmp_path, digits_net, capsys):
    images = stacked(ALL_TRIPLES[:40]).permute(0, 2, 3, 1).numpy()  # an .npz is channels-last
    np.savez(tmp_path / "rgb.npz", x=images)
    np.savez(tmp_path / "gray.npz", x=images[..., 0])
    common = ["--ref", "stacked-mnist", "--features", str(digits_net), "--metrics", "modes0.04k"]
    assert main(["evaluate", str(tmp_path / "rgb.npz"), *common]) == 0
    out = capsys.readouterr().out
    assert out.startswith("modes0.04k_digits") and "/1000 modes, KL to uniform" in out
    assert main(["evaluate", str(tmp_path / "gray.npz"), *common]) == 2
    err = capsys.readouterr().err.strip()
    assert "3-channel 28x28" in err and "1x28x28" in err and "\n" not in err
    json.dumps(stacked_modes([[1, 2, 3]]))  # the record is plain JSON


def test_training_scores_modes_and_refuses_single_channel_data(tmp_path, digits_net, capsys):
    y = np.arange(60, dtype=np.uint8) % 10
    x = (y[:, None, None] * 25).repeat(28, 1).repeat(28, 2).astype(np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=y, x_test=x[:20], y_test=y[:20])
    args = ["train", "--quiet", "--preset", "mnist-dcgan", f"data.root={tmp_path}",
            "data.download=false", "train.kimg=0.05", "train.batch_size=16",
            "model.g_channels=4", "model.d_channels=4", "model.conditional=false",
            "eval.plots=false", "eval.metrics=modes0.05k",
            f"eval.features={digits_net}"]  # fmt: skip
    gray = tmp_path / "gray-run"
    assert main([*args, "--data", "mnist", "--out", str(gray)]) == 2
    assert "3-channel 28x28" in capsys.readouterr().err and not gray.exists()
    run = tmp_path / "run"
    assert main([*args, "--data", "stacked-mnist", "--out", str(run)]) == 0
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    final = lines[-1]
    assert final["kind"] == "final" and 1 <= final["modes0.05k_digits_covered"] <= 50
    assert final["modes0.05k_digits"] > 0
    report = (run / "report.html").read_text()
    assert "modes_covered" in report and '"counts"' not in report
