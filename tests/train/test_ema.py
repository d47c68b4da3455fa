"""G_ema: the weight average, and batch-norm statistics re-estimated for the averaged weights."""

import copy

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from minmax.config import resolve
from minmax.models.dcgan import DCGANGenerator
from minmax.train.checkpoint import find_checkpoint
from minmax.train.ema import recompute_batch_norm, update_ema
from minmax.train.loop import train
from tests.train.test_image_runs import TINY


def latents(z_dim, n_classes=0):
    def draw(n, rng):
        y = torch.randint(0, n_classes, (n,), generator=rng) if n_classes else None
        return torch.randn(n, z_dim, generator=rng), y

    return draw


def averaged_generator(n_classes=0):
    """G and a G_ema whose weights moved away from G's while its statistics are G's."""
    torch.manual_seed(0)
    G = DCGANGenerator(z_dim=8, channels=1, resolution=28, width=8, n_classes=n_classes)
    with torch.no_grad():
        G.train()(torch.randn(256, 8), torch.randint(0, max(n_classes, 1), (256,)))
    G_ema = copy.deepcopy(G).eval()
    with torch.no_grad():
        for p in G_ema.parameters():
            p.mul_(1.7).add_(0.05)
    return G, G_ema


def eval_vs_batch_stats(G, draw):
    """How far eval mode (running statistics) is from train mode on one big batch."""
    z, y = draw(4096, torch.Generator().manual_seed(123))
    with torch.no_grad():
        G.eval()
        a = G(z, y)
        G.train()
        b = G(z, y)
        G.eval()
    return (a - b).abs().max().item()


@pytest.mark.parametrize("n_classes", [0, 3])
def test_recomputed_statistics_fit_the_averaged_weights(n_classes):
    G, G_ema = averaged_generator(n_classes)
    draw = latents(8, n_classes)
    before = eval_vs_batch_stats(G_ema, draw)
    assert recompute_batch_norm(G_ema, draw, 2048, seed=1)
    after = eval_vs_batch_stats(G_ema, draw)
    assert before > 0.2  # copied statistics are wrong for these weights
    assert after < 0.1 * before


def test_recompute_changes_only_the_statistics():
    G, G_ema = averaged_generator()
    weights = {k: v.clone() for k, v in G_ema.named_parameters()}
    global_rng = torch.get_rng_state()
    recompute_batch_norm(G_ema, latents(8), 600, seed=1)  # 256 + 256 + 88
    assert not G_ema.training
    for name, p in G_ema.named_parameters():
        assert torch.equal(p, weights[name])
    assert torch.equal(torch.get_rng_state(), global_rng)  # training's streams untouched
    for m in G_ema.norms:
        assert m.momentum == 0.1 and m.num_batches_tracked.item() == 3


def test_recompute_is_deterministic_and_can_be_off():
    _, a = averaged_generator()
    b, c = copy.deepcopy(a), copy.deepcopy(a)
    recompute_batch_norm(a, latents(8), 512, seed=5)
    recompute_batch_norm(b, latents(8), 512, seed=5)
    for x, y in zip(a.buffers(), b.buffers(), strict=True):
        assert torch.equal(x, y)
    stale = [x.clone() for x in c.buffers()]
    assert recompute_batch_norm(c, latents(8), 0, seed=5)  # has batch-norm, left alone
    assert all(torch.equal(x, y) for x, y in zip(c.buffers(), stale, strict=True))
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 2))
    assert not recompute_batch_norm(mlp, lambda n, rng: (torch.randn(n, 8, generator=rng),), 64, 0)


def test_update_ema_averages_weights_and_copies_buffers():
    G, G_ema = averaged_generator()
    start = {name: p.clone() for name, p in G_ema.named_parameters()}
    update_ema(G_ema, G, 0.75)
    for (name, p), q in zip(G_ema.named_parameters(), G.parameters(), strict=True):
        assert torch.allclose(p, 0.75 * start[name] + 0.25 * q)
    for x, y in zip(G_ema.buffers(), G.buffers(), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("samples", [0, 512])
def test_saved_g_ema_has_its_own_statistics(tmp_path, samples):
    data = tmp_path / "x.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.integers(0, 255, (64, 28, 28), dtype=np.uint8))
    overrides = [f"data.name={data}", "model.conditional=false", *TINY, "train.kimg=0.32",
                 "train.ema_beta=0.9",
                 "train.ema_warmup_kimg=0", f"train.ema_bn_samples={samples}"]  # fmt: skip
    train(resolve("mnist-dcgan", overrides=overrides), tmp_path / "run", progress=False)
    folder = find_checkpoint(tmp_path / "run")
    G, G_ema = (load_file(str(folder / f"{n}.safetensors")) for n in ("G", "G_ema"))
    stats = [k for k in G if k.endswith("running_var")]
    assert stats
    same = all(torch.equal(G[k], G_ema[k]) for k in stats)
    assert same == (samples == 0)
