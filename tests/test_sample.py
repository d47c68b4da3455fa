"""Sampling helpers: generate (classes, truncation, seeds), slerp, and saving by suffix."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from minmax.config import ModelConfig
from minmax.errors import UsageError
from minmax.models import build_networks
from minmax.models.codes import code_prior
from minmax.sample import generate, interpolate, save_samples, slerp


class Echo(nn.Module):
    """A 'generator' that shows its inputs: image = z[0] everywhere, channel 1 = class."""

    z_dim, n_classes = 4, 3

    def forward(self, z, y=None):
        x = z[:, :1, None, None].expand(-1, 1, 2, 2)
        c = (y.float() / 10)[:, None, None, None].expand(-1, 1, 2, 2)
        return torch.cat([x.clamp(-1, 1), c], dim=1)


def test_generate_is_seeded_and_honours_class_and_truncation():
    G = Echo()
    x1, y1 = generate(G, 50, seed=3, batch=7)
    x2, y2 = generate(G, 50, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)  # batching does not change samples
    assert set(y1.tolist()) == {0, 1, 2}
    _, y = generate(G, 20, class_index=2)
    assert (y == 2).all()
    x, _ = generate(G, 2000, truncation=0.5)
    assert x[:, 0].abs().max() <= 0.5
    with pytest.raises(UsageError, match="0..2"):
        generate(G, 2, class_index=3)
    with pytest.raises(UsageError, match="positive"):
        generate(G, 2, truncation=0.0)


def test_slerp_stays_on_the_great_circle():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    path = slerp(a, b, torch.linspace(0, 1, 5))
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    torch.testing.assert_close(path.norm(dim=1), torch.ones(5))  # a line would dip to 0.71
    angles = torch.atan2(path[:, 1], path[:, 0])
    torch.testing.assert_close(angles, torch.linspace(0, math.pi / 2, 5))


def test_interpolation_frames_hold_one_class():
    frames = interpolate(Echo(), n_points=3, steps=4, class_index=1)
    assert frames.shape == (12, 2, 2, 2)
    assert torch.allclose(frames[:, 1], torch.full((12, 2, 2), 0.1))


def test_save_images_by_suffix(tmp_path):
    x = torch.rand(5, 3, 4, 4) * 2 - 1
    save_samples(x, tmp_path / "a.npz", torch.arange(5))
    with np.load(tmp_path / "a.npz") as f:
        assert f["x"].shape == (5, 4, 4, 3) and f["x"].dtype == np.uint8
        assert f["y"].tolist() == [0, 1, 2, 3, 4]
    save_samples(x, tmp_path / "grid.png")
    save_samples(x, tmp_path / "each")
    assert len(list((tmp_path / "each").glob("*.png"))) == 5
    with pytest.raises(UsageError, match="not empty"):
        save_samples(x, tmp_path / "each")
    with pytest.raises(UsageError, match=".png"):
        save_samples(x, tmp_path / "x.jpg")


def test_truncation_spares_the_code_coordinate_of_a_coded_generator():
    torch.manual_seed(0)
    G = build_networks(ModelConfig(z_dim=3, codes=8, g_width=8, g_depth=1), (2,))[0]
    prior = code_prior(G)
    seen = []
    prior.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    generate(G, 4000, truncation=0.5)
    z = torch.cat(seen)
    assert z[:, 1:].abs().max() <= 0.5  # the continuous part is truncated ...
    codes = torch.bincount(prior.code_of(z), minlength=8)
    assert (codes > 0).all()  # ... while every code, the outer ones too, is still drawn


def test_sampling_imports_no_training_code():
    """A fresh interpreter: ``import minmax`` imports no torch, and ``minmax.sample`` (what
    ``minmax.load_generator`` is) no ``minmax.train`` module: sharing G needs no trainer."""
    script = (
        "import sys, minmax\n"
        "print('torch' in sys.modules)\n"
        "import minmax.sample\n"
        "assert minmax.load_generator is minmax.sample.load_generator\n"
        "print(sorted(m for m in sys.modules if m.startswith('minmax.train')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["False", "[]"]
