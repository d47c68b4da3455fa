"""R3GAN's modern ResNet (models/r3gan.py): shapes, fix-up init, no normalisation, [1,2,1]
resampling, and a tiny training run with its recipe (RpGAN + R1 + R2 every step, β1 = 0)."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from minmax.cli import main
from minmax.config import ModelConfig, resolve
from minmax.errors import UsageError
from minmax.models import build_networks, d_blocks, rebuild
from minmax.models.r3gan import (
    ResidualBlock,
    blur,
    down,
    lowpass_kernel,
    sides,
    up,
)
from minmax.train.loop import train
from tests.bar_digits import bar_digits

N_CLASSES = 10
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
         nn.modules.instancenorm._InstanceNorm)  # fmt: skip


def build(resolution, channels=1, conditional=False, seed=0, **kw):
    kw = {"z_dim": 8, "g_channels": 8, "d_channels": 8, "blocks_per_stage": 1, **kw}
    cfg = ModelConfig(arch="r3gan", conditional=conditional, **kw)
    torch.manual_seed(seed)
    return build_networks(cfg, (channels, resolution, resolution), N_CLASSES)


def inputs(G, n=4, seed=1):
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=rng)
    y = torch.randint(G.n_classes, (n,), generator=rng) if G.n_classes else None
    return z, y


@pytest.mark.parametrize("resolution", [28, 32])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("conditional", [False, True])
def test_shapes_and_rebuild(resolution, channels, conditional):
    G, D, spec = build(resolution, channels, conditional)
    assert json.loads(json.dumps(spec)) == spec
    z, y = inputs(G)
    x = G(z, y)
    assert x.shape == (4, channels, resolution, resolution)
    assert torch.isfinite(x).all() and x.abs().max() <= 1
    assert D(x, y).shape == (4,)
    G2, D2 = rebuild(spec, "G"), rebuild(spec, "D")
    G2.load_state_dict(G.state_dict())
    D2.load_state_dict(D.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(D2(G2(z, y), y), D(G(z, y), y), rtol=0, atol=0)


def test_feature_map_sides():
    assert sides(28) == [4, 7, 14, 28]
    assert sides(32) == [4, 8, 16, 32]
    assert sides(8) == [4, 8]
    G, D, _ = build(28)
    seen = []
    for stage in [*G.stages, *D.stages]:
        stage.register_forward_hook(lambda m, args, out: seen.append(out.shape[-1]))
    z, y = inputs(G)
    D(G(z, y), y)
    assert seen == [4, 7, 14, 28, 28, 14, 7, 4]


def test_residual_blocks_start_as_identity():
    torch.manual_seed(0)
    block = ResidualBlock(16, expansion=3, group_channels=8, scale=0.5)
    assert torch.count_nonzero(block.project.weight) == 0
    assert block.mix.groups == 16 * 3 // 8
    x = torch.randn(2, 16, 5, 5)
    assert torch.equal(block(x), x)
    # Every block of both networks, in place.
    G, D, _ = build(32, conditional=True, blocks_per_stage=2)
    blocks = [m for net in (G, D) for m in net.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 2 * 4 * 2
    for b in blocks:
        h = torch.randn(2, b.expand.in_channels, 4, 4)
        assert torch.equal(b(h), h)


def test_fixup_scale_of_the_branch_layers():
    """expand and mix are He-initialised × L^(−1/4) (L blocks, m = 3 layers per branch)."""
    G, _, _ = build(32, g_channels=64, blocks_per_stage=2)
    n_blocks = 4 * 2
    block = G.stages[-1][0]  # 64 channels, expansion 2
    he_std = math.sqrt(2 / (1 + 0.2**2)) / math.sqrt(64)  # fan-in of the 1×1 expand conv
    expected = he_std * n_blocks**-0.25
    assert block.expand.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert all(torch.count_nonzero(b) == 0 for b in (block.expand.bias, block.mix.bias))


def test_no_normalisation_anywhere():
    G, D, _ = build(32, 3, conditional=True)
    for net in (G, D):
        for m in net.modules():
            assert not isinstance(m, NORMS), type(m).__name__
            assert not parametrize.is_parametrized(m)  # no spectral norm either
    with pytest.raises(UsageError, match="no normalisation layers"):
        build(32, d_spectral_norm=True)


def test_lowpass_filter_is_121():
    f = torch.tensor([1.0, 2.0, 1.0])
    torch.testing.assert_close(lowpass_kernel(), torch.outer(f, f) / 16, rtol=0, atol=0)
    assert lowpass_kernel().sum() == 1
    # A constant map stays constant through blur, up and down (replicate padding).
    x = torch.full((1, 2, 7, 7), 0.3)
    for y in (blur(x), up(x, 14), down(x)):
        torch.testing.assert_close(y, torch.full_like(y, 0.3))
    assert up(torch.ones(1, 1, 4, 4), 7).shape[-1] == 7 and down(x).shape[-1] == 4
    # An impulse in the middle spreads as the kernel.
    impulse = torch.zeros(1, 1, 5, 5)
    impulse[0, 0, 2, 2] = 1
    torch.testing.assert_close(blur(impulse)[0, 0, 1:4, 1:4], lowpass_kernel())


def test_gradients_flow_through_both_networks():
    G, D, _ = build(28, conditional=True)
    z, y = inputs(G)
    D(G(z, y), y).sum().backward()
    for name, p in [*G.named_parameters(), *D.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # The zero-initialised last layers get a gradient, so the branches start learning.
    for net in (G, D):
        for m in net.modules():
            if isinstance(m, ResidualBlock):
                assert m.project.weight.grad.abs().sum() > 0


def test_r1_double_backward_and_freeze_d_blocks():
    G, D, _ = build(28, conditional=True)
    z, y = inputs(G)
    x = G(z, y).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x, y).sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in D.parameters() if p.grad is not None)
    assert len(d_blocks(D)) == 4


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"expansion": 3, "group_channels": 16}, "model.group_channels=16"),
        ({"blocks_per_stage": 0}, "must be 1 or more"),
    ],
)
def test_bad_block_settings(kw, message):
    with pytest.raises(UsageError, match=message):
        build(32, **kw)


@pytest.mark.parametrize("resolution", [24, 48, 4, 2048])
def test_unsupported_resolution(resolution):
    with pytest.raises(UsageError, match="arch=r3gan supports square images of") as err:
        build(resolution)
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """32 labelled 28×28 'digits' (a bright bar whose position encodes the class)."""
    x, y = bar_digits(32, 2, np.random.default_rng(0))
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=x, y=y)
    return path


RECIPE = [
    "model.arch=r3gan",
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
    "train.ema_bn_samples=0",
    "eval.plots=false",
]


def test_tiny_training_run_with_the_recipe(tmp_path, digits):
    cfg = resolve("mnist-dcgan", overrides=[f"data.name={digits}", *RECIPE, "train.kimg=0.064"])
    summary = train(cfg, tmp_path / "run", progress=False, resume=False)
    assert summary["stopped_by"] == "kimg" and summary["step"] == 4
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [v for row in lines if row["kind"] == "train" for k, v in row.items() if "loss" in k]
    assert losses and all(math.isfinite(v) for v in losses)


def test_unsupported_resolution_on_the_command_line(tmp_path, digits, capsys):
    out = tmp_path / "run"
    code = main(["train", "--quiet", "--preset", "mnist-dcgan", "--data", str(digits),
                 "--out", str(out), *RECIPE, "data.resolution=48"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "arch=r3gan supports square images of" in err and "\n" not in err
    assert not out.exists()
