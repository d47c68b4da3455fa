import json
import math

import pytest
import torch
from safetensors.torch import load_file

from minmax.config import resolve
from minmax.train.checkpoint import find_checkpoint
from minmax.train.loop import lr_factor, train

TINY = [
    "model.g_width=16",
    "model.d_width=16",
    "model.g_depth=2",
    "model.d_depth=2",
    "model.z_dim=4",
    "train.batch_size=64",
    "eval.n_samples=200",
    "train.threads=1",
    "train.log_every_steps=10",
    "eval.plots=false",
]


def tiny(*overrides: str):
    return resolve("ring", overrides=[*TINY, *overrides])


def test_lr_factor_schedules():
    assert lr_factor("constant", 0.7) == 1.0
    assert lr_factor("linear", 0.25) == pytest.approx(0.75)
    assert lr_factor("cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor("cosine", 0.5) == pytest.approx(0.5)
    assert lr_factor("cosine", 1.0) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor("linear", 1.7) == 0.0  # clamped past the end


def test_a_run_writes_everything_it_promises(tmp_path):
    run = tmp_path / "run"
    summary = train(tiny("train.kimg=1.5", "eval.plots=true"), run, progress=False)
    assert summary["stopped_by"] == "kimg" and summary["kimg"] >= 1.5
    for name in [
        "config.yaml",
        "metrics.jsonl",
        "samples.png",
        "discriminator.png",
    ]:
        assert (run / name).is_file(), name
    folder = find_checkpoint(run)
    assert folder.name == "ckpt-000000001536"  # the images seen
    for name in [
        "networks.json",
        "G.safetensors",
        "G_ema.safetensors",
        "D.safetensors",
        "training.safetensors",
        "state.json",
        "manifest.json",
    ]:
        assert (folder / name).is_file(), name
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["kind"] for x in lines].count("final") == 1
    train_lines = [x for x in lines if x["kind"] == "train"]
    assert train_lines and all(math.isfinite(x["loss_D"]) for x in train_lines)
    assert set(summary) >= {"modes_captured", "hq_fraction", "reverse_kl", "counts"}
    assert sum(summary["counts"]) <= 200


def _tensors(run):
    folder = find_checkpoint(run)
    return {n: load_file(str(folder / f"{n}.safetensors")) for n in ("G", "D", "G_ema")}


@pytest.mark.parametrize("extra", [[], ["model.codes=4", "train.code_rate=0.1"]])
def test_resume_continues_bit_identically(tmp_path, extra):
    # A constant schedule: a decaying one is laid over train.kimg, which the resume extends.
    straight, pieces = tmp_path / "straight", tmp_path / "pieces"
    const = ["train.lr_schedule=constant", *extra]
    train(tiny("train.kimg=3", *const), straight, progress=False)
    train(tiny("train.kimg=1.2", *const), pieces, progress=False)
    train(tiny("train.kimg=3", *const), pieces, resume=True, progress=False)
    a, b = _tensors(straight), _tensors(pieces)
    for net in a:
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), (net, key)
    if extra:  # the learned code shares moved, and were saved and restored with G
        assert not torch.equal(a["G"]["prior.logits"], torch.zeros(4))
    state = json.loads((find_checkpoint(pieces) / "state.json").read_text())
    assert (
        state["images_seen"]
        == json.loads((find_checkpoint(straight) / "state.json").read_text())["images_seen"]
    )


@pytest.mark.parametrize("objective", ["saturating", "hinge", "wgan-gp", "lsgan", "rpgan"])
def test_every_objective_trains_with_regularizers(tmp_path, objective):
    cfg = tiny(
        "train.kimg=0.3",
        f"loss.objective={objective}",
        "loss.r1_gamma=0.1",
        "loss.r2_gamma=0.1",
        "train.log_every_steps=1",
    )
    summary = train(cfg, tmp_path / "run", progress=False)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(x) for x in lines if '"train"' in x]
    assert summary["step"] == 5
    assert all(math.isfinite(x["loss_D"]) and math.isfinite(x["loss_G"]) for x in losses)


def test_wall_time_cap_stops_cleanly_with_a_checkpoint(tmp_path):
    summary = train(
        tiny("train.kimg=1000", "train.max_minutes=0.0001"), tmp_path / "r", progress=False
    )
    assert summary["stopped_by"] == "max_minutes"
    assert summary["kimg"] < 1000
    assert (find_checkpoint(tmp_path / "r") / "state.json").is_file()
    assert (tmp_path / "r" / "metrics.jsonl").is_file()


def test_one_dimensional_data_and_points_files(tmp_path):
    import numpy as np

    points = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    np.save(tmp_path / "p.npy", points)
    summary = train(
        tiny("train.kimg=0.3", f"data.name={tmp_path / 'p.npy'}"), tmp_path / "a", progress=False
    )
    assert "modes_captured" not in summary  # no known modes for a user's points
    train(
        tiny("train.kimg=0.3", "data.name=mixture1d", "eval.plots=true"),
        tmp_path / "b",
        progress=False,
    )
    assert (tmp_path / "b" / "discriminator.png").is_file()


@pytest.mark.parametrize("name", ["checkerboard", "spiral", "gaussian1d"])
def test_every_toy_density_runs_through_the_report(tmp_path, name):
    summary = train(
        tiny("train.kimg=0.2", f"data.name={name}", "eval.plots=true"),
        tmp_path / "r",
        progress=False,
    )
    assert (tmp_path / "r" / "discriminator.png").stat().st_size > 0
    assert ("modes_captured" in summary) == (name != "checkerboard")


def test_resuming_with_another_model_or_dataset_is_refused(tmp_path):
    from minmax.errors import UsageError

    run = tmp_path / "r"
    train(tiny("train.kimg=0.2"), run, progress=False)
    with pytest.raises(UsageError, match="model.g_width"):
        train(tiny("train.kimg=0.4", "model.g_width=32"), run, resume=True, progress=False)
    with pytest.raises(UsageError, match="data"):
        train(tiny("train.kimg=0.4", "data.name=grid"), run, resume=True, progress=False)
    # How it runs may change: more kimg, another Adam kernel, accumulation.
    train(tiny("train.kimg=0.4", "train.adam=foreach", "train.accum_steps=2"), run, resume=True,
          progress=False)  # fmt: skip
