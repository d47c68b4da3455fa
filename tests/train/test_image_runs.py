"""Image runs end to end at tiny sizes: grids, checkpoints, exact resume, sampling, walks."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from minmax.cli import main
from minmax.config import resolve
from minmax.train.checkpoint import find_checkpoint
from minmax.train.loop import train
from tests.bar_digits import bar_digits

TINY = [
    "model.g_channels=8",
    "model.d_channels=8",
    "model.z_dim=8",
    "train.batch_size=16",
    "train.threads=1",
    "train.log_every_steps=5",
    "train.checkpoint_every_kimg=1000",
    "train.channels_last=false",  # two fresh runs are compared: no layout chosen by timing
]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """48 labelled 28×28 'digits' (a bright bar whose position encodes the class)."""
    x, y = bar_digits(48, 3, np.random.default_rng(0))
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=x, y=y)
    return path


def cfg(data, *overrides):
    return resolve("mnist-dcgan", overrides=[f"data.name={data}", *TINY, *overrides])


def test_image_run_writes_grids_samples_and_checkpoint(tmp_path, digits):
    run = tmp_path / "run"
    summary = train(cfg(digits, "train.kimg=0.4", "train.grid_every_kimg=0.15"), run, False, False)
    assert summary["stopped_by"] == "kimg"
    grids = sorted(p.name for p in (run / "grids").iterdir())
    assert grids == ["kimg000000.160.png", "kimg000000.304.png"]  # first batch past 150, 300
    with Image.open(run / "samples.png") as im:
        assert im.mode == "L" and im.size[0] > 28 * 7
    spec = json.loads((find_checkpoint(run) / "networks.json").read_text())
    assert spec["arch"] == "dcgan" and spec["G"]["resolution"] == 28
    kinds = [json.loads(x)["kind"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert "train" in kinds and kinds[-1] == "final"


def test_conditional_augmented_run_resumes_bit_identically(tmp_path, digits):
    extra = [
        "model.conditional=true",
        "augment.policy=translation,cutout,color",
        "loss.r1_gamma=0.1",
        "loss.reg_every=2",
        "loss.ortho_reg=1e-4",
        "train.ema_warmup_kimg=0.1",
    ]
    straight, pieces = tmp_path / "straight", tmp_path / "pieces"
    train(cfg(digits, "train.kimg=0.48", *extra), straight, progress=False)
    train(cfg(digits, "train.kimg=0.24", *extra), pieces, progress=False)
    train(cfg(digits, "train.kimg=0.48", *extra), pieces, resume=True, progress=False)
    for name in ("G", "D", "G_ema"):
        a = load_file(str(find_checkpoint(straight) / f"{name}.safetensors"))
        b = load_file(str(find_checkpoint(pieces) / f"{name}.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)


def test_sample_and_interpolate_commands(tmp_path, digits, capsys):
    run = tmp_path / "run"
    overrides = [*TINY, "train.kimg=0.1", "model.conditional=true", "eval.plots=false"]
    assert main(["train", "--quiet", "--preset", "mnist-dcgan", "--data", str(digits),
                 "--out", str(run), *overrides]) == 0  # fmt: skip
    assert main(["sample", str(run), "--n", "10", "--out", str(tmp_path / "x.npz")]) == 0
    with np.load(tmp_path / "x.npz") as f:
        assert f["x"].shape == (10, 28, 28) and f["x"].dtype == np.uint8
        assert set(f["y"].tolist()) <= {0, 1, 2}
    args = ["--n", "6", "--class", "2", "--truncation", "0.5"]
    assert main(["sample", str(run), *args, "--out", str(tmp_path / "one")]) == 0
    assert len(list((tmp_path / "one").glob("*.png"))) == 6
    assert main(["sample", str(run), "--n", "9", "--out", str(tmp_path / "g.png")]) == 0
    assert main(["interpolate", str(run), "--steps", "3", "--out", str(tmp_path / "w.gif")]) == 0
    with Image.open(tmp_path / "w.gif") as im:
        assert im.n_frames == 12 and im.size == (28, 28)
    assert (tmp_path / "w.png").is_file()
    capsys.readouterr()
    # Bad input: a class out of range, a class for points, a non-animation suffix.
    assert main(["sample", str(run), "--n", "2", "--class", "3", "--out", "y.npz"]) == 2
    assert "--class must be in 0..2" in capsys.readouterr().err
    assert main(["interpolate", str(run), "--out", str(tmp_path / "w.mp4")]) == 2


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.resolution=48"], "arch=dcgan supports square images of 28, 32, 64 pixels"),
        (["model.arch=biggan", "model.attention_res=5"], "attention_res"),
        (["augment.policy=flip"], "unknown augment.policy entry 'flip'"),
        (["train.batch_size=64"], "holds 48 images, fewer than train.batch_size=64"),
    ],
)
def test_bad_image_configs_fail_before_writing(tmp_path, digits, capsys, overrides, message):
    out = tmp_path / "run"
    code = main(["train", "--quiet", "--preset", "mnist-dcgan", "--data", str(digits),
                 "--out", str(out), *TINY, *overrides])  # fmt: skip
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_conditional_model_needs_labels(tmp_path, capsys):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, x=np.zeros((8, 28, 28), np.uint8))
    code = main(["train", "--quiet", "--preset", "mnist-dcgan", "--data", str(path),
                 "--out", str(tmp_path / "run"), "model.conditional=true"])  # fmt: skip
    assert code == 2
    assert "labelled" in capsys.readouterr().err
