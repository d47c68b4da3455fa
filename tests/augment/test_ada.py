"""ADA: the pipeline at p = 0 and 1, each op's geometry, the rule that moves p, and p's
place in checkpoints, logs and exact resume."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from minmax.augment import ADA, DEFAULT_OPS, OPS, make_augment, parse_ops
from minmax.augment.ada import COLOUR, GREY_COLOUR
from minmax.cli import main
from minmax.config import AugmentConfig, LossConfig, resolve
from minmax.errors import UsageError
from minmax.objectives import get_objective
from minmax.report import curves
from minmax.train.checkpoint import find_checkpoint
from minmax.train.loop import train
from minmax.train.steps import Batch, Engine, d_step
from tests.bar_digits import bar_digits


def batch(n=16, c=3, size=16, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def ada(ops, p=1.0, seed=1, **kwargs):
    a = ADA(ops, torch.Generator().manual_seed(seed), **kwargs)
    a.p = p
    return a


def test_default_ops_match_the_config_default_and_leave_cutout_out():
    assert AugmentConfig().ada_ops == DEFAULT_OPS
    assert "cutout" not in parse_ops(DEFAULT_OPS) and "cutout" in OPS


def test_p_zero_is_the_identity():
    x = batch()
    assert ada(",".join(OPS), p=0.0)(x) is x


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("channels", [1, 3])
def test_each_op_at_p_one_changes_images_and_passes_gradients(name, channels):
    x = batch(c=channels).requires_grad_(True)
    out = ada(name)(x)
    assert out.shape == x.shape
    if channels == 1 and name in COLOUR and name not in GREY_COLOUR:
        assert torch.equal(out, x)  # hue, saturation, lumaflip need RGB: grey images skip them
        return
    assert not torch.allclose(out, x, atol=1e-3)
    out.square().sum().backward()  # differentiable: G's gradient flows through the op
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    again = ada(name)(x.detach())  # the same seed draws the same transforms
    assert torch.equal(out.detach(), again)


def test_the_whole_pipeline_passes_gradients():
    for channels in (1, 3):
        x = batch(c=channels).requires_grad_(True)
        ada(",".join(OPS))(x).sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def matches(out, candidates):
    """Index of the candidate each image equals (to float rounding), -1 for none."""
    found = []
    for i in range(out.shape[0]):
        hits = [k for k, c in enumerate(candidates) if torch.allclose(out[i], c[i], atol=1e-4)]
        found.append(hits[0] if hits else -1)
    return found


def test_xflip_flips_or_leaves_each_image():
    x = batch(n=32)
    found = matches(ada("xflip")(x), [x, x.flip(-1)])
    assert -1 not in found and set(found) == {0, 1}


def test_rot90_rotates_by_exact_quarter_turns():
    x = batch(n=32)
    found = matches(ada("rot90")(x), [torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
    assert -1 not in found and set(found) == {0, 1, 2, 3}


def test_integer_translation_shifts_by_whole_pixels():
    x = torch.zeros(32, 1, 16, 16)
    x[:, :, 3:13, 3:13] = batch(n=32, c=1, size=10)  # a blank border: padding adds nothing
    shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    rolled = [torch.roll(x, s, dims=(2, 3)) for s in shifts]
    found = matches(ada("xint")(x), rolled)
    assert -1 not in found and len(set(found)) > 5  # 0.125 × 16 = up to 2 pixels each way


def test_grey_images_get_brightness_and_contrast_only():
    x = batch(c=1)
    out = ada("brightness,contrast,lumaflip,hue,saturation")(x)
    for i in range(x.shape[0]):  # each image: a·x + b, one a and b per image
        a, b = np.polyfit(x[i].flatten().numpy(), out[i].flatten().numpy(), 1)
        assert torch.allclose(out[i], x[i] * float(a) + float(b), atol=1e-4)


def test_hue_and_saturation_keep_grey_pixels_and_lumaflip_negates_them():
    grey = batch(c=1).expand(-1, 3, -1, -1).contiguous()
    assert torch.allclose(ada("hue,saturation")(grey), grey, atol=1e-5)
    found = matches(ada("lumaflip")(grey), [grey, -grey])
    assert -1 not in found and set(found) == {0, 1}


def feed(a, sign, steps, n=8):
    for _ in range(steps):
        a.observe(torch.full((n,), float(sign)))


def test_p_moves_toward_the_target_at_the_stated_rate():
    a = ada(DEFAULT_OPS, p=0.0, target=0.6, kimg=2.0, interval=4, batch_size=50)
    step = 50 * 4 / 2000  # batch · interval / (kimg · 1000) = 0.1
    feed(a, +1, 3)
    assert a.p == 0.0 and a.rt is None  # no move before the interval ends
    feed(a, +1, 1)
    assert a.rt == 1.0 and a.p == pytest.approx(step)  # r_t > target: up
    feed(a, +1, 8)
    assert a.p == pytest.approx(3 * step)
    feed(a, -1, 4)
    assert a.rt == -1.0 and a.p == pytest.approx(2 * step)  # r_t < target: down
    for sign in (1, 1, 1, -1):  # r_t = (3 − 1) / 4 = 0.5 < 0.6: down
        a.observe(torch.tensor([float(sign)]))
    assert a.rt == 0.5 and a.p == pytest.approx(step)
    feed(a, -1, 40)
    assert a.p == 0.0  # clamped at 0
    feed(a, +1, 4 * 100)
    assert a.p == 1.0  # clamped at 1
    assert a.scalars() == {"ada_p": 1.0, "ada_rt": 1.0}


class _Const(nn.Module):
    """G: every image is ``value``; a parameter so an optimizer has something to hold."""

    def __init__(self, value):
        super().__init__()
        self.value, self.w = value, nn.Parameter(torch.zeros(()))

    def forward(self, z, y=None):
        return torch.full((len(z), 1, 2, 2), self.value) + self.w


class _Shifted(nn.Module):
    """D(x) = mean(x) + 100: ranks brighter images higher, every logit far above 0."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x, y=None):
        return self.w * x.flatten(1).mean(1) + 100.0


@pytest.mark.parametrize("objective, sign", [("nonsaturating", 1.0), ("rpgan", -1.0),
                                             ("wgan-gp", -1.0)])  # fmt: skip
def test_r_t_reads_pairs_where_the_loss_sees_only_logit_differences(objective, sign):
    """D ranks the fakes above the reals, every logit positive: under RpGAN and WGAN-GP the
    logits' offset is arbitrary, so ADA must see D losing (D(x_r) − D(x_f) < 0), not the
    positive sign of D(x_r) that the non-saturating loss means."""
    G, D = _Const(0.5), _Shifted()
    seen = []
    real, z = torch.full((6, 1, 2, 2), -0.5), torch.zeros(6, 3)
    d_step(Engine.plain(G, D), get_objective(objective), LossConfig(objective=objective),
           [Batch(real, None, z, None)], torch.optim.SGD(D.parameters(), lr=0.0),
           torch.Generator().manual_seed(0), observe_real=seen.append)  # fmt: skip
    assert torch.equal(seen[0].sign(), torch.full((6,), sign))


def test_fixed_p_holds_and_state_round_trips_mid_interval():
    fixed = ada(DEFAULT_OPS, p=0.5, fixed_p=0.5)
    feed(fixed, +1, 40)
    assert fixed.p == 0.5 and fixed.rt == 1.0
    a = ada(DEFAULT_OPS, p=0.0, target=0.4, interval=4, kimg=1.0, batch_size=64)
    feed(a, +1, 7)
    state = json.loads(json.dumps(a.state_dict()))  # as checkpoints store it
    b = ada(DEFAULT_OPS, p=0.0, target=0.4, interval=4, kimg=1.0, batch_size=64)
    b.load_state_dict(state)
    feed(a, -1, 1)
    feed(b, -1, 1)
    assert a.state_dict() == b.state_dict()
    assert a.rt == 0.5 and a.p == pytest.approx(2 * 64 * 4 / 1000)  # 0.5 > 0.4: up twice


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["augment.ada=true", "augment.policy=translation"], "use one of them"),
        (["augment.ada=true", "augment.ada_target=1"], "ada_target' must be in (0, 1)"),
        (["augment.ada=true", "augment.ada_target=0"], "ada_target' must be in (0, 1)"),
        (["augment.ada_kimg=0"], "ada_kimg' must be a positive number"),
        (["augment.ada_interval=0"], "ada_interval' must be 1 or more"),
        (["augment.ada_fixed_p=1.5"], "ada_fixed_p' must be in [0, 1]"),
    ],
)
def test_bad_config_is_refused(overrides, message):
    with pytest.raises(UsageError) as err:
        resolve("mnist-dcgan", overrides=overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_ops_and_point_data_are_refused():
    with pytest.raises(UsageError, match="did you mean 'xflip'"):
        parse_ops("xflp,rot90")
    cfg = resolve("ring", overrides=["augment.ada=true"])
    with pytest.raises(UsageError, match="augments images"):
        make_augment(cfg.augment, torch.Generator(), 64, (2,))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["augment.ada=true"], "augment.ada=true augments images"),
        (["augment.ada=true", "augment.ada_ops=xflip,hue,rot9"], "did you mean 'rot90'"),
        (["augment.ada=true", "augment.ada_target=1.5"], "must be in (0, 1)"),
    ],
)
def test_cli_refuses_bad_input_in_one_line(tmp_path, capsys, overrides, message):
    out = tmp_path / "run"
    assert main(["train", "--quiet", "--preset", "ring", "--out", str(out), *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


TINY = [
    "model.g_channels=8",
    "model.d_channels=8",
    "model.z_dim=8",
    "train.batch_size=16",
    "train.threads=1",
    "train.log_every_steps=5",
    "train.checkpoint_every_kimg=1000",
    "train.channels_last=false",  # two runs compared bit for bit: no layout chosen by timing
    "eval.plots=false",
    "augment.ada=true",
    "augment.ada_kimg=0.5",  # p moves 0.128 per update: visibly, in a few steps
    "augment.ada_interval=2",
    "augment.ada_target=0.05",
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


def test_an_ada_run_logs_p_saves_it_and_resumes_bit_identically(tmp_path, digits):
    straight, pieces = tmp_path / "straight", tmp_path / "pieces"
    train(cfg(digits, "train.kimg=0.48"), straight, progress=False)
    train(cfg(digits, "train.kimg=0.24"), pieces, progress=False)
    half = json.loads((find_checkpoint(pieces) / "state.json").read_text())["ada"]
    assert half["p"] > 0  # a resumed run must not start again from p = 0
    train(cfg(digits, "train.kimg=0.48"), pieces, resume=True, progress=False)
    lines = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    logged = [x for x in lines if x["kind"] == "train"]
    assert logged and all("ada_p" in x and 0 <= x["ada_p"] <= 1 for x in logged)
    assert any(x["ada_p"] > 0 for x in logged) and "ada_rt" in logged[-1]
    charts = curves(lines)  # the report plots them, each on its own chart
    assert "ada_p" in charts and "ada_rt" in charts
    a = json.loads((find_checkpoint(straight) / "state.json").read_text())["ada"]
    b = json.loads((find_checkpoint(pieces) / "state.json").read_text())["ada"]
    assert a == b
    for name in ("G", "D", "G_ema"):
        x = load_file(str(find_checkpoint(straight) / f"{name}.safetensors"))
        y = load_file(str(find_checkpoint(pieces) / f"{name}.safetensors"))
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), (name, key)
