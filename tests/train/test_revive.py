"""Code revival: a starved code moves to the real point D scores highest (minmax.train.revive)."""

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from minmax.config import ModelConfig, TrainConfig, resolve
from minmax.errors import UsageError
from minmax.models import build_networks
from minmax.models.codes import code_prior
from minmax.train import loop, revive
from minmax.train.checkpoint import find_checkpoint
from minmax.train.revive import revive_code, revive_due


def _coded(codes: int = 6) -> nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(z_dim=3, codes=codes, g_width=16, g_depth=2, code_init="box")
    G = build_networks(cfg, (2,))[0]
    G.place_codes(-torch.ones(2), torch.ones(2), torch.Generator().manual_seed(0))
    return G


def _centres(G: nn.Module) -> torch.Tensor:
    """Each code's centre: the sample of a latent whose continuous part is 0."""
    prior = code_prior(G)
    z = torch.zeros(prior.codes, 3)
    edges = torch.cat([torch.zeros(1), prior.shares().cumsum(0)[:-1]])
    z[:, 0] = torch.special.ndtri(edges + prior.shares() / 2)  # the middle of each code's bin
    assert torch.equal(prior.code_of(z), torch.arange(prior.codes))
    with torch.no_grad():
        return G(z)


class _Cloud:
    """A source of uniform points in [0, 2]^2, unlabelled."""

    def sample(self, n: int, rng: torch.Generator):
        return 2 * torch.rand(n, 2, generator=rng), None


class _Peak(nn.Module):
    """A stand-in D: highest at ``peak``, lower with distance."""

    def __init__(self, peak: torch.Tensor) -> None:
        super().__init__()
        self.peak = peak

    def forward(self, x, y=None):
        return -((x - self.peak) ** 2).sum(1)


def test_a_moved_code_lands_on_its_point_with_the_mean_share():
    G = _coded()
    prior = code_prior(G)
    prior.logits.copy_(torch.tensor([2.0, -1.0, -7.0, 0.5, 3.0, 2.5]))  # centred: sum 0
    before = _centres(G)
    G.move_code(2, torch.tensor([5.0, -3.0]))
    after = _centres(G)
    torch.testing.assert_close(after[2], torch.tensor([5.0, -3.0]))
    others = torch.arange(6) != 2
    torch.testing.assert_close(after[others], before[others])
    # The logits stay centred; code 2's was set to their old mean, 0, so its share is
    # e^0 / (e^0 + the other codes' sum), no longer starved.
    assert abs(float(prior.logits.mean())) < 1e-6
    others = torch.tensor([2.0, -1.0, 0.5, 3.0, 2.5]).exp().sum()
    torch.testing.assert_close(prior.shares()[2], 1 / (1 + others))


def test_the_most_starved_code_moves_where_d_is_highest_in_g_and_g_ema():
    G, G_ema = _coded(), _coded()
    prior = code_prior(G)
    prior.logits[4] = -6.0  # share far below a quarter of 1/6
    prior.logits[1] = -3.0
    prior.logits -= prior.logits.mean()
    code_prior(G_ema).logits.copy_(prior.logits)
    before = _centres(G)
    peak = torch.tensor([1.7, 0.2])
    moved = revive_code(G, G_ema, _Peak(peak), _Cloud(), seed=3)
    assert moved["code"] == 4 and moved["share"] < 0.25 / 6
    # The target is the drawn real point nearest the peak (D's argmax over the batch).
    real, _ = _Cloud().sample(revive.REVIVE_BATCH, torch.Generator().manual_seed(3))
    target = real[((real - peak) ** 2).sum(1).argmin()]
    for g in (G, G_ema):
        torch.testing.assert_close(_centres(g)[4], target)
    torch.testing.assert_close(_centres(G)[:4], before[:4])
    assert moved["d_at_target"] > moved["d_median"]


def test_nothing_moves_when_no_code_is_starved():
    G, G_ema = _coded(), _coded()
    code_prior(G).logits.copy_(torch.tensor([0.3, -0.3, 0.2, -0.2, 0.1, -0.1]))
    state = {k: v.clone() for k, v in G.state_dict().items()}
    assert revive_code(G, G_ema, _Peak(torch.zeros(2)), _Cloud(), seed=0) is None
    for key, value in G.state_dict().items():
        assert torch.equal(value, state[key]), key
    uncoded = build_networks(ModelConfig(z_dim=3, g_width=16, g_depth=2), (2,))[0]
    assert revive_code(uncoded, uncoded, _Peak(torch.zeros(2)), _Cloud(), seed=0) is None


def test_revivals_are_due_at_each_multiple_in_the_first_part_of_the_run():
    t = TrainConfig(kimg=10, code_revive_kimg=1)
    due = [seen for seen in range(256, 10_241, 256) if revive_due(t, seen, 256)]
    assert due == [1024, 2048, 3072, 4096]  # crossings of 1,000, 2,000, ...; none after 5,000
    assert revive.REVIVE_UNTIL == 0.5
    assert not any(revive_due(TrainConfig(kimg=10), s, 256) for s in range(256, 10_241, 256))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.code_revive_kimg=10"], "model.code_init=box"),
        (["model.code_init=box", "train.code_revive_kimg=-1"], "zero or positive"),
    ],
)
def test_bad_revival_settings_are_refused(overrides, message):
    with pytest.raises(UsageError, match=message):
        resolve("ring", overrides=["model.codes=8", *overrides])


def _tiny(*overrides: str):
    return resolve("ring", overrides=[
        "model.g_width=16", "model.d_width=16", "model.g_depth=2", "model.d_depth=2",
        "model.z_dim=4", "model.codes=4", "model.code_init=box", "train.code_revive_kimg=0.5",
        "train.batch_size=64", "train.threads=1", "train.lr_schedule=constant",
        "eval.n_samples=200", "eval.plots=false", *overrides])  # fmt: skip


def test_a_run_revives_logs_and_resumes_bit_identically(tmp_path, monkeypatch):
    monkeypatch.setattr(revive, "STARVED", 2.0)  # every least-shared code counts as starved
    straight, pieces = tmp_path / "straight", tmp_path / "pieces"
    loop.train(_tiny("train.kimg=3"), straight, progress=False)
    # The same run stopped by SIGTERM after 1.2 kimg (the loop checkpoints and stops), resumed.
    due = loop.revive_due

    def stop_once(t, seen, per_step):
        if seen >= 1200 and not stopped:
            stopped.append(seen)
            os.kill(os.getpid(), signal.SIGTERM)
        return due(t, seen, per_step)

    stopped: list[int] = []
    monkeypatch.setattr(loop, "revive_due", stop_once)
    first = loop.train(_tiny("train.kimg=3"), pieces, progress=False)
    assert first["stopped_by"] != "kimg" and first["kimg"] < 1.5
    loop.train(_tiny("train.kimg=3"), pieces, resume=True, progress=False)
    lines = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    revived = [x for x in lines if x["kind"] == "revive"]
    assert [round(x["kimg"], 3) for x in revived] == [0.512, 1.024]  # in the first 1.5 kimg
    lines = [json.loads(x) for x in (pieces / "metrics.jsonl").read_text().splitlines()]
    assert [round(x["kimg"], 3) for x in lines if x["kind"] == "revive"] == [0.512, 1.024]
    for name in ("G", "G_ema", "D"):
        a = load_file(str(find_checkpoint(straight) / f"{name}.safetensors"))
        b = load_file(str(find_checkpoint(pieces) / f"{name}.safetensors"))
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
