"""The MLP discriminator's Fourier-feature head (model.d_fourier)."""

import pytest
import torch
import torch.nn.functional as F

from minmax.config import ModelConfig, resolve
from minmax.errors import UsageError
from minmax.models import build_networks, rebuild
from minmax.models.mlp import MLPDiscriminator
from minmax.objectives import v_d


def test_two_heads_the_first_is_the_plain_mlp():
    torch.manual_seed(0)
    plain = MLPDiscriminator(2, 16, 2)
    torch.manual_seed(0)
    headed = MLPDiscriminator(2, 16, 2, fourier=8, fourier_scale=0.5)
    x = torch.randn(10, 2)
    logits = headed(x)
    assert logits.shape == (10, 2)
    torch.testing.assert_close(logits[:, 0], plain(x))  # same seed, same plain weights
    assert plain(x).shape == (10,)


def test_frequencies_are_drawn_at_the_scale_and_saved_with_the_weights():
    torch.manual_seed(0)
    cfg = ModelConfig(d_fourier=4000, d_fourier_scale=3.0, d_width=8, d_depth=1)
    _, D, spec = build_networks(cfg, (2,))
    assert D.frequencies.shape == (2, 4000)
    assert D.frequencies.std().item() == pytest.approx(3.0, rel=0.03)
    assert "frequencies" in D.state_dict()
    D2 = rebuild(spec, "D")
    assert not torch.equal(D2.frequencies, D.frequencies)  # a fresh draw, until loaded
    D2.load_state_dict(D.state_dict())
    x = torch.randn(5, 2)
    torch.testing.assert_close(D2(x), D(x), rtol=0, atol=0)


def _fit(D: torch.nn.Module, steps: int = 150) -> torch.Tensor:
    """Train D on interleaved combs: real at k + N(0, 0.05²), fake at k + 0.5 (k = -4..4)."""
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(D.parameters(), 2e-3, betas=(0.5, 0.999))
    for _ in range(steps):
        k = torch.randint(-4, 5, (2, 256, 1), generator=gen).float()
        noise = 0.05 * torch.randn(2, 256, 1, generator=gen)
        real, fake = k[0] + noise[0], k[1] + 0.5 + noise[1]
        opt.zero_grad()
        loss = v_d(D(real), D(fake))
        loss.backward()
        opt.step()
    with torch.no_grad():
        real, fake = k[0] + noise[0], k[1] + 0.5 + noise[1]
        logits_real, logits_fake = D(real), D(fake)
    # each head's own V_D: 2 log 2 = 1.386 at chance
    return F.softplus(-logits_real).mean(0) + F.softplus(logits_fake).mean(0)


def test_the_fourier_head_sees_detail_the_plain_head_misses():
    """Nine real and nine fake bumps 0.5 apart over [-4, 4.5]: the plain MLP stays near
    chance in a few hundred steps (its spectral bias); the Fourier head separates them."""
    torch.manual_seed(0)
    plain_loss, fourier_loss = _fit(MLPDiscriminator(1, 32, 2, fourier=16, fourier_scale=1.0))
    assert plain_loss > 1.0
    assert fourier_loss < 0.5


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.d_fourier=-1"], "zero or positive"),
        (["model.d_fourier=8", "model.d_fourier_scale=0"], "positive number"),
        (["model.d_fourier=8", "model.d_fourier_scale=inf"], "positive number"),
        (["model.d_fourier_scale=2"], "set model.d_fourier too"),
        (["model.d_fourier=1.5"], "d_fourier"),
    ],
)
def test_bad_fourier_settings_are_refused(overrides, message):
    with pytest.raises(UsageError, match=message):
        resolve("ring", overrides=overrides)


def test_only_the_mlp_family_has_the_head():
    with pytest.raises(UsageError, match="arch=mlp only"):
        build_networks(ModelConfig(arch="dcgan", z_dim=8, d_fourier=8), (1, 28, 28))


def test_a_two_headed_run_trains_plots_resumes_and_calibrates(tmp_path, capsys):
    """The grid preset (Fourier head, codes over the box) end to end on a tiny budget: the
    plots and `minmax calibrate` read one log-ratio per sample from the two heads."""
    from minmax.cli import main

    run = tmp_path / "run"
    tiny = ["model.g_width=16", "model.d_width=16", "model.codes=8", "model.d_fourier=4",
            "train.batch_size=64", "eval.n_samples=200", "train.threads=1"]  # fmt: skip
    assert main(["train", "--quiet", "--preset", "grid", "--out", str(run), *tiny,
                 "train.kimg=0.5"]) == 0  # fmt: skip
    assert (run / "discriminator.png").is_file() and (run / "samples.png").is_file()
    assert main(["train", "--quiet", "--resume", str(run), "train.kimg=1"]) == 0
    assert main(["calibrate", str(run), "--kimg", "1", "--n-eval", "200"]) == 0
    assert "held-out V_D" in capsys.readouterr().out
