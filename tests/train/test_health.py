"""Divergence handling (stop with a diagnostic, or roll back) and the failure-sign warnings."""

import json

import pytest
import torch

from minmax.cli import main
from minmax.config import resolve
from minmax.errors import DivergenceError
from minmax.train import loop
from minmax.train.checkpoint import find_checkpoint, load_module
from minmax.train.health import Health, nonfinite, spread
from minmax.train.logs import read_jsonl
from minmax.train.loop import train

TINY = ["model.g_width=16", "model.d_width=16", "model.z_dim=4", "train.batch_size=64",
        "train.threads=1", "train.log_every_steps=4", "train.checkpoint_every_kimg=0.512",
        "train.lr_schedule=constant", "eval.n_samples=100", "eval.plots=false"]  # fmt: skip


def poison(monkeypatch, at_steps, once=True):
    """Make G's weights NaN right after the iterations numbered in ``at_steps`` (each once,
    unless ``once`` is false: then a rolled-back run meets it again)."""
    real = loop.iteration

    def iteration(cfg, run, *args):
        losses = real(cfg, run, *args)
        if run.count.step in at_steps:
            if once:
                at_steps.discard(run.count.step)
            with torch.no_grad():
                next(run.G.parameters()).fill_(float("nan"))
        return losses

    monkeypatch.setattr(loop, "iteration", iteration)


def test_nonfinite_weights_stop_the_run_with_a_diagnostic(tmp_path, monkeypatch):
    poison(monkeypatch, at_steps={10})  # checkpoints at steps 8, 16, ...; logs every 4
    run = tmp_path / "r"
    with pytest.raises(DivergenceError, match=r"step 12 .*G\.net\.0\.weight"):
        train(resolve("ring", overrides=[*TINY, "train.kimg=2"]), run, progress=False)
    report = json.loads((run / "diverged" / "report.json").read_text())
    assert report["step"] == 12 and "G.net.0.weight" in report["nonfinite"]
    # The last checkpoint (step 8) is a good one and loads.
    folder = find_checkpoint(run)
    assert json.loads((folder / "state.json").read_text())["step"] == 8
    G, _, _ = loop.build_networks(resolve("ring", overrides=TINY).model, (2,), 0)
    load_module(folder, "G", G)
    assert [x["kind"] for x in read_jsonl(run / "metrics.jsonl")][-1] == "diverged"


def test_the_cli_exits_3_and_keeps_the_diagnostic(tmp_path, monkeypatch, capsys):
    poison(monkeypatch, at_steps={2})  # before the first checkpoint
    out = tmp_path / "r"
    code = main(["train", "--quiet", "--out", str(out), *TINY, "train.kimg=2"])
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("minmax: error: training diverged at step 4")
    assert (out / "diverged" / "G.safetensors").is_file()


def test_a_diverged_run_resumes_with_rollback_as_its_message_says(tmp_path, monkeypatch, capsys):
    poison(monkeypatch, at_steps={10, 14})  # the resumed run meets a NaN at step 14
    out = tmp_path / "r"
    assert main(["train", "--quiet", "--out", str(out), *TINY, "train.kimg=2"]) == 3
    assert "--resume it with train.on_nonfinite=rollback" in capsys.readouterr().err
    assert main(["train", "--quiet", "--resume", str(out), "train.on_nonfinite=rollback"]) == 0
    kinds = [x["kind"] for x in read_jsonl(out / "metrics.jsonl")]
    assert "rollback" in kinds and kinds[-1] == "final"


def test_rollback_restores_the_last_checkpoint_with_lower_learning_rates(tmp_path, monkeypatch):
    poison(monkeypatch, at_steps={10})
    run = tmp_path / "r"
    cfg = resolve("ring", overrides=[*TINY, "train.kimg=2", "train.on_nonfinite=rollback"])
    summary = train(cfg, run, progress=False)
    assert summary["stopped_by"] == "kimg"
    events = [x for x in read_jsonl(run / "metrics.jsonl") if x["kind"] == "rollback"]
    assert len(events) == 1
    assert events[0]["step"] == 12 and events[0]["to_kimg"] == 0.512
    assert events[0]["lr_scale"] == 0.5
    state = json.loads((find_checkpoint(run) / "state.json").read_text())
    assert state["lr_scale"] == 0.5  # a resume keeps the lowered rates
    assert not nonfinite({"G": loop.build_networks(cfg.model, (2,), 0)[0]})


def test_rollbacks_are_limited(tmp_path, monkeypatch):
    poison(monkeypatch, at_steps=set(range(9, 1000)), once=False)  # again after each rollback
    cfg = resolve("ring", overrides=[*TINY, "train.kimg=2", "train.on_nonfinite=rollback",
                                     "train.max_rollbacks=2"])  # fmt: skip
    with pytest.raises(DivergenceError, match="after 2 rollback"):
        train(cfg, tmp_path / "r", progress=False)
    kinds = [x["kind"] for x in read_jsonl(tmp_path / "r" / "metrics.jsonl")]
    assert kinds.count("rollback") == 2 and kinds[-1] == "diverged"


def test_nonfinite_names_the_tensors():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    assert nonfinite({"G": a, "D": b}) == []
    with torch.no_grad():
        b.bias[1] = float("inf")
    assert nonfinite({"G": a, "D": b}) == ["D.bias"]


def test_d_winning_is_warned_once():
    health = Health("nonsaturating")
    warnings = [health.d_wins(0.01, 3.0 + 0.5 * i) for i in range(12)]
    assert sum(w is not None for w in warnings) == 1 and "D is winning" in warnings[4]
    # A falling G loss, or an objective whose D loss is not ≥ 0, never warns.
    assert all(Health("nonsaturating").d_wins(0.01, 3.0 - 0.1 * i) is None for i in range(10))
    wgan = Health("wgan-gp")
    assert all(wgan.d_wins(0.0, float(i)) is None for i in range(10))


def test_collapse_is_warned_when_samples_are_alike():
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(64, 2, generator=gen)
    assert Health("nonsaturating").collapse(torch.randn(64, 2, generator=gen), real) is None
    same = torch.ones(64, 2) + 1e-4 * torch.randn(64, 2, generator=gen)
    assert "mode collapse" in Health("nonsaturating").collapse(same, real)
    assert spread(torch.zeros(1, 3)) == 0.0


def test_a_collapsed_generator_is_warned_in_the_log(tmp_path, monkeypatch):
    real = loop.iteration

    def iteration(cfg, run, *args):  # G_ema's last layer outputs a constant
        losses = real(cfg, run, *args)
        with torch.no_grad():
            last = [m for m in run.G.modules() if isinstance(m, torch.nn.Linear)][-1]
            last.weight.zero_()
        return losses

    monkeypatch.setattr(loop, "iteration", iteration)
    train(resolve("ring", overrides=[*TINY, "train.kimg=0.6", "train.ema_beta=0"]),
          tmp_path / "r", progress=False)  # fmt: skip
    warnings = [x for x in read_jsonl(tmp_path / "r" / "metrics.jsonl") if x["kind"] == "warning"]
    assert len(warnings) == 1 and "mode collapse" in warnings[0]["message"]


def test_bad_policy_values_are_refused():
    from minmax.errors import UsageError

    for override in ["train.on_nonfinite=skip", "train.rollback_lr_factor=0",
                     "train.rollback_lr_factor=2", "train.max_rollbacks=-1"]:  # fmt: skip
        with pytest.raises(UsageError):
            resolve("ring", overrides=[override])
