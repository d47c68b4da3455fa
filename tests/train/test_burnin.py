"""The burn-in schedules (train/burnin.py): values over time, off by default, bad input, and
an exact resume while they move."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from minmax.augment import DiffAugment
from minmax.cli import main
from minmax.config import TrainConfig, preset_names, resolve
from minmax.errors import UsageError
from minmax.objectives import get_objective
from minmax.train import loop
from minmax.train.burnin import BurnIn, burnin, cosine_ramp, ema_beta_from_half_life
from minmax.train.checkpoint import find_checkpoint
from minmax.train.loop import train

R3 = TrainConfig(
    batch_size=64,
    n_dis=1,
    lr_g=5e-5,
    lr_d=5e-5,
    beta2=0.99,
    burnin_kimg=100.0,
    lr_start_factor=4.0,
    beta2_start=0.9,
    ema_half_life_kimg=50.0,
    ema_half_life_start_factor=0.0,
    gamma_start_factor=10.0,
)


def test_values_at_start_middle_end_and_after():
    start, mid, end, after = (burnin(R3, k) for k in (0.0, 50.0, 100.0, 250.0))
    assert start.lr_factor == 4.0 and start.beta2 == 0.9 and start.gamma_factor == 10.0
    assert start.ema_beta == 0.0  # half-life 0: G_ema follows G
    # Halfway along the half cosine: the mean of start and end.
    assert mid.lr_factor == pytest.approx(2.5)
    assert mid.beta2 == pytest.approx(0.945)
    assert mid.gamma_factor == pytest.approx(5.5)
    assert mid.ema_beta == pytest.approx(0.5 ** (64 / 25_000))
    for s in (end, after):
        assert s == BurnIn(1.0, 0.99, 0.5 ** (64 / 50_000), 1.0)
    # A quarter in: (1 + cos(π/4)) / 2 of the way back from the end.
    w = (1 + math.cos(math.pi / 4)) / 2
    assert burnin(R3, 25.0).lr_factor == pytest.approx(1 + 3 * w)


def test_cosine_ramp_is_monotone_and_flat_at_its_ends():
    values = [cosine_ramp(4.0, 1.0, k, 10.0) for k in np.linspace(0, 12, 121)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert cosine_ramp(4.0, 1.0, 0.01, 10.0) == pytest.approx(4.0, abs=1e-4)
    assert cosine_ramp(4.0, 1.0, 9.99, 10.0) == pytest.approx(1.0, abs=1e-4)
    assert cosine_ramp(4.0, 1.0, 3.0, 0.0) == 1.0  # off


def test_ema_half_life_halves_an_old_weight():
    beta = ema_beta_from_half_life(2.0, 64)
    steps = 2000 / 64
    assert beta**steps == pytest.approx(0.5)
    assert ema_beta_from_half_life(0.0, 64) == 0.0


def test_half_life_counts_every_d_batch_of_a_g_step():
    t = TrainConfig(batch_size=32, n_dis=2, ema_half_life_kimg=1.0)
    assert burnin(t, 0.0).ema_beta == pytest.approx(0.5 ** (64 / 1000))


BURNIN_PRESETS = {"cifar10-r3gan", "folder64-r3gan", "mnist-uncond", "stacked-mnist"}


@pytest.mark.parametrize("name", [n for n in preset_names() if n not in BURNIN_PRESETS])
def test_presets_resolve_identical_schedules(name):
    """Every shipped preset but those with R3GAN's recipe has the burn-in off: the plain values
    always."""
    t = resolve(name).train
    for kimg in (0.0, 0.5, 10.0, t.kimg):
        assert burnin(t, kimg) == BurnIn(1.0, None, t.ema_beta, 1.0)


@pytest.mark.parametrize(
    ("name", "gamma", "half_life"),
    [("cifar10-r3gan", (0.05, 0.005), 5000), ("folder64-r3gan", (2, 0.2), 500)],
)
def test_r3gan_presets_follow_the_papers_schedules(name, gamma, half_life):
    """lr 2e-4 -> 5e-5, β2 0.9 -> 0.99, γ and the EMA half-life from 0, over 20,000 kimg."""
    cfg = resolve(name)
    t, start, end = cfg.train, burnin(cfg.train, 0.0), burnin(cfg.train, 20_000.0)
    assert t.lr_g * start.lr_factor == pytest.approx(2e-4) and t.lr_g * end.lr_factor == 5e-5
    assert (start.beta2, end.beta2) == pytest.approx((0.9, 0.99))
    assert cfg.loss.r1_gamma * start.gamma_factor == pytest.approx(gamma[0])
    assert cfg.loss.r1_gamma * end.gamma_factor == pytest.approx(gamma[1])
    assert cfg.loss.r2_gamma == cfg.loss.r1_gamma and cfg.loss.reg_every == 1
    assert start.ema_beta == 0.0 and t.ema_half_life_kimg == half_life
    assert (cfg.loss.objective, t.beta1) == ("rpgan", 0.0)


@pytest.mark.parametrize("name", ["mnist-uncond", "stacked-mnist"])
def test_cpu_recipe_presets_burn_in_over_100_kimg(name):
    """lr 4e-3 -> 1e-3, β2 0.9 -> 0.999, γ 1 -> 0.1, G_ema from none to a 50-kimg half-life;
    R1/R2 every 4th D step."""
    cfg = resolve(name)
    t, start, mid, end = cfg.train, *(burnin(cfg.train, k) for k in (0.0, 50.0, 100.0))
    assert t.lr_g * start.lr_factor == pytest.approx(4e-3) and end.lr_factor == 1.0
    assert 1.0 < mid.lr_factor < 4.0
    assert (start.beta2, end.beta2) == pytest.approx((0.9, 0.999))
    assert cfg.loss.r1_gamma * start.gamma_factor == pytest.approx(1.0)
    assert cfg.loss.r1_gamma * end.gamma_factor == pytest.approx(0.1)
    assert start.ema_beta == 0.0 and end.ema_beta == pytest.approx(0.5 ** (64 / 50_000))
    assert burnin(t, 500.0) == end
    assert (cfg.loss.objective, t.beta1, cfg.model.conditional) == ("rpgan", 0.0, False)
    assert cfg.loss.reg_every == 4  # lazy R1/R2: more images in a CPU's minutes (measured)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.burnin_kimg=-1"], "'train.burnin_kimg' must be zero or positive"),
        (["train.burnin_kimg=5", "train.gamma_start_factor=-1"], "gamma_start_factor"),
        (["train.burnin_kimg=5", "train.lr_start_factor=-0.5"], "lr_start_factor"),
        (["train.burnin_kimg=5", "train.beta2_start=1"], "'train.beta2_start' must be in"),
        (["train.gamma_start_factor=2"], "set train.burnin_kimg > 0 too"),
        (["train.beta2_start=0.9"], "set train.burnin_kimg > 0 too"),
        (["train.burnin_kimg=5", "train.ema_half_life_start_factor=0"], "ema_half_life_kimg"),
        (["train.ema_half_life_kimg=-2"], "ema_half_life_kimg"),
    ],
)
def test_bad_schedules_are_one_line_usage_errors(overrides, message, capsys):
    with pytest.raises(UsageError, match=message):
        resolve("ring", overrides=overrides)
    assert main(["train", "--dry-run", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_gamma_factor_scales_both_penalties(monkeypatch):
    seen = []
    original = loop.d_step

    def spy(e, objective, loss_cfg, *args, **kwargs):
        seen.append((loss_cfg.r1_gamma, loss_cfg.r2_gamma))
        return original(e, objective, loss_cfg, *args, **kwargs)

    cfg = resolve("ring", overrides=["loss.r1_gamma=0.5", "loss.r2_gamma=0.25",
                                     "train.batch_size=8", "model.g_width=8",
                                     "model.d_width=8", "train.threads=1"])  # fmt: skip
    source = loop.resolve_data(cfg.data)
    run = loop.build_run(cfg, source)
    objective, augment = get_objective("nonsaturating"), DiffAugment("", run.local_rng)
    monkeypatch.setattr(loop, "d_step", spy)
    loop.iteration(cfg, run, source, objective, augment, gamma_factor=3.0)
    loop.iteration(cfg, run, source, objective, augment)
    assert seen == [(1.5, 0.75), (0.5, 0.25)]
    assert (cfg.loss.r1_gamma, cfg.loss.r2_gamma) == (0.5, 0.25)  # the config is untouched


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(32, 28, 28), dtype=np.uint8)
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=x, y=(np.arange(32) % 2).astype(np.int64))
    return path


def test_resume_is_exact_while_the_schedules_move(tmp_path, digits):
    """Every scheduled value is a function of images seen, which checkpoints keep."""
    extra = [
        f"data.name={digits}",
        "model.arch=r3gan",
        "model.conditional=false",
        "model.g_channels=8",
        "model.d_channels=8",
        "model.z_dim=8",
        "model.blocks_per_stage=1",
        "loss.objective=rpgan",
        "loss.r1_gamma=0.1",
        "loss.r2_gamma=0.1",
        "loss.reg_every=1",
        "train.beta1=0",
        "train.batch_size=16",
        "train.threads=1",
        "train.log_every_steps=2",
        "train.checkpoint_every_kimg=1000",
        "train.channels_last=false",
        "train.ema_warmup_kimg=0",
        "train.burnin_kimg=0.2",
        "train.lr_start_factor=3",
        "train.beta2_start=0.9",
        "train.ema_half_life_kimg=0.05",
        "train.ema_half_life_start_factor=0",
        "train.gamma_start_factor=5",
        "eval.plots=false",
    ]
    straight, pieces = tmp_path / "straight", tmp_path / "pieces"
    train(resolve("mnist-dcgan", overrides=[*extra, "train.kimg=0.128"]), straight, False, False)
    train(resolve("mnist-dcgan", overrides=[*extra, "train.kimg=0.064"]), pieces, False, False)
    train(resolve("mnist-dcgan", overrides=[*extra, "train.kimg=0.128"]), pieces, True, False)
    for name in ("G", "D", "G_ema"):
        a = load_file(str(find_checkpoint(straight) / f"{name}.safetensors"))
        b = load_file(str(find_checkpoint(pieces) / f"{name}.safetensors"))
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)


def test_the_loop_applies_each_scheduled_value(tmp_path, monkeypatch):
    """Learning rate, β2 and G_ema's β at every step are burnin(t, kimg before the step)."""
    seen = {"lr": [], "beta2": [], "ema": []}
    set_lr, set_beta2, update_ema = loop.set_lr, loop.set_beta2, loop.update_ema

    def spy_lr(opt, lr):
        seen["lr"].append(lr)
        set_lr(opt, lr)

    def spy_beta2(opt, beta2):
        seen["beta2"].append(beta2)
        set_beta2(opt, beta2)
        assert all(g["betas"] == (0.0, beta2) for g in opt.param_groups)

    def spy_ema(G_ema, G, beta):
        seen["ema"].append(beta)
        update_ema(G_ema, G, beta)

    monkeypatch.setattr(loop, "set_lr", spy_lr)
    monkeypatch.setattr(loop, "set_beta2", spy_beta2)
    monkeypatch.setattr(loop, "update_ema", spy_ema)
    overrides = ["model.g_width=8", "model.d_width=8", "train.batch_size=100", "train.kimg=1",
                 "train.lr_schedule=constant", "train.beta1=0", "train.burnin_kimg=0.5",
                 "train.lr_start_factor=2", "train.beta2_start=0.9",
                 "train.ema_half_life_kimg=0.3", "train.ema_half_life_start_factor=0.5",
                 "train.threads=1", "eval.plots=false", "eval.n_samples=100"]  # fmt: skip
    cfg = resolve("ring", overrides=overrides)
    loop.train(cfg, tmp_path / "run", progress=False)
    t = cfg.train
    expected = [burnin(t, step * 0.1) for step in range(10)]
    assert seen["lr"][0::2] == [t.lr_g * s.lr_factor for s in expected]
    assert seen["lr"][1::2] == [t.lr_d * s.lr_factor for s in expected]
    assert seen["beta2"][0::2] == [s.beta2 for s in expected]
    assert seen["ema"] == [0.0 if step * 0.1 < t.ema_warmup_kimg else s.ema_beta
                           for step, s in enumerate(expected)]  # fmt: skip
    assert seen["lr"][-1] == t.lr_d and seen["beta2"][-1] == 0.999
