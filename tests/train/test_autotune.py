"""``auto`` speed settings: candidates by capability, choice by a probe, explicit values win."""

import json

import numpy as np
import pytest
import torch
import yaml

from minmax.cli import main
from minmax.config import resolve
from minmax.data.images import ImageDataset
from minmax.data.sources import ImageSource, resolve_data
from minmax.errors import UsageError
from minmax.train import autotune
from minmax.train.distributed import Dist

SMALL = ["model.g_channels=8", "model.d_channels=8", "model.z_dim=8", "train.batch_size=8"]
CPU = Dist(device=torch.device("cpu"))


def images(n=32):
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=gen)
    return ImageSource(ImageDataset(x, torch.arange(n) % 4, 4, "random", list("abcd")))


@pytest.fixture
def no_bf16(monkeypatch):
    monkeypatch.setattr(autotune, "native_bf16", lambda device: False)


@pytest.fixture
def fake_probe(monkeypatch):
    """Replace the timing with given figures; record what was timed."""
    calls = []

    def install(figures):
        def timed(cfg, source, device, options, batch, seconds=0.0, rounds=None):
            calls.append(list(options))
            return {option: figures[option] for option in options}

        monkeypatch.setattr(autotune, "time_iterations", timed)
        return calls

    return install


def test_without_native_bf16_auto_only_times_fp32_layouts(no_bf16):
    cfg = resolve("mnist-dcgan")
    assert autotune.candidates(cfg, (1, 28, 28), torch.device("cpu")) == [
        ("fp32", False),
        ("fp32", True),
    ]


def test_with_native_bf16_auto_times_both_precisions(monkeypatch):
    monkeypatch.setattr(autotune, "native_bf16", lambda device: True)
    options = autotune.candidates(resolve("mnist-dcgan"), (1, 28, 28), torch.device("cpu"))
    assert len(options) == 4 and ("bf16", True) in options


def test_points_models_have_no_layout_to_choose(no_bf16):
    assert autotune.candidates(resolve("ring"), (2,), torch.device("cpu")) == [("fp32", False)]


def test_explicit_values_fix_their_dimension(monkeypatch):
    monkeypatch.setattr(autotune, "native_bf16", lambda device: True)
    cfg = resolve("mnist-dcgan", overrides=["train.channels_last=false"])
    assert autotune.candidates(cfg, (1, 28, 28), torch.device("cpu")) == [
        ("fp32", False),
        ("bf16", False),
    ]


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        ({("fp32", False): 100.0, ("fp32", True): 150.0}, ("fp32", True)),
        ({("fp32", False): 100.0, ("fp32", True): 101.0}, ("fp32", False)),  # within margin
        ({("fp32", False): 100.0, ("fp32", True): 60.0}, ("fp32", False)),
    ],
)
def test_the_probe_picks_the_faster_layout_by_a_margin(no_bf16, fake_probe, figures, expected):
    fake_probe(figures)
    speed = autotune.resolve_speed(resolve("mnist-dcgan", overrides=SMALL), images(), CPU)
    assert (speed.precision, speed.channels_last) == expected
    assert speed.probe == {"fp32": 100.0, "fp32+NHWC": figures[("fp32", True)]}


def test_bf16_must_win_by_its_margin(monkeypatch, fake_probe):
    monkeypatch.setattr(autotune, "native_bf16", lambda device: True)
    figures = {("fp32", False): 100.0, ("fp32", True): 90.0, ("bf16", False): 104.0,
               ("bf16", True): 80.0}  # fmt: skip
    fake_probe(figures)
    cfg = resolve("mnist-dcgan", overrides=SMALL)
    assert autotune.resolve_speed(cfg, images(), CPU).precision == "fp32"  # 4% is not enough
    figures[("bf16", True)] = 200.0
    speed = autotune.resolve_speed(cfg, images(), CPU)
    assert (speed.precision, speed.channels_last) == ("bf16", True)


def test_explicit_choices_are_not_probed(no_bf16, fake_probe):
    calls = fake_probe({})
    cfg = resolve("mnist-dcgan", overrides=[*SMALL, "train.precision=fp32",
                                            "train.channels_last=true", "train.adam=foreach",
                                            "train.threads=1"])  # fmt: skip
    speed = autotune.resolve_speed(cfg, images(), CPU)
    assert calls == []
    assert (speed.precision, speed.channels_last, speed.adam, speed.threads) == (
        "fp32", True, "foreach", 1)  # fmt: skip


def test_emulated_bf16_is_honoured_with_its_measured_slowdown(no_bf16, fake_probe):
    fake_probe({("fp32", False): 300.0, ("bf16", False): 30.0})
    cfg = resolve("mnist-dcgan", overrides=[*SMALL, "train.precision=bf16",
                                            "train.channels_last=false"])  # fmt: skip
    speed = autotune.resolve_speed(cfg, images(), CPU)
    assert speed.precision == "bf16"
    assert any("no native bf16" in note and "10.0× slower" in note for note in speed.notes)


def test_an_unknown_device_gets_fp32_and_a_note(fake_probe):
    calls = fake_probe({})
    speed = autotune.resolve_speed(
        resolve("mnist-dcgan", overrides=SMALL), images(), Dist(device=torch.device("meta"))
    )
    assert calls == [] and (speed.precision, speed.channels_last) == ("fp32", False)
    assert any("meta" in note for note in speed.notes)


def test_out_of_memory_splits_the_batch_into_micro_batches(no_bf16, monkeypatch):
    seen = []

    def timed(cfg, source, device, options, batch, seconds=0.0, rounds=None):
        seen.append(cfg.train.accum_steps)
        if batch // cfg.train.accum_steps > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return {option: 1.0 for option in options}

    monkeypatch.setattr(autotune, "time_iterations", timed)
    cfg = resolve("mnist-dcgan", overrides=[*SMALL, "train.batch_size=4"])  # no CPU scout step
    speed = autotune.resolve_speed(cfg, images(), CPU)
    assert seen == [1, 2] and speed.accum_steps == 2
    assert "train.accum_steps=2" in speed.settings()
    monkeypatch.setattr(autotune, "time_iterations", lambda *a, **k: (_ for _ in ()).throw(
        torch.cuda.OutOfMemoryError("CUDA out of memory")))  # fmt: skip
    with pytest.raises(UsageError, match="does not fit"):
        autotune.resolve_speed(cfg, images(), CPU)


@pytest.mark.parametrize(
    "rate, probed, noted",
    [(1000.0, [64], ""), (8.0, [30], "probe timed at batch 30, not 64"),
     (0.5, [], "too slow to probe here (one step of 64 images takes about 128 s")],
)  # fmt: skip
def test_a_slow_network_on_cpu_is_probed_at_a_batch_that_fits(
    no_bf16, monkeypatch, rate, probed, noted
):
    """A GPU preset on a CPU: one small step predicts the probe; past the budget (30 s) the
    probe times a smaller batch, and says so, instead of taking many minutes; a network too
    slow even for that is not probed: the plain settings."""
    batches = []

    def timed(cfg, source, device, options, batch, seconds=0.0, rounds=None):
        batches.append(batch)
        return {option: rate for option in options}

    monkeypatch.setattr(autotune, "time_iterations", timed)
    cfg = resolve("mnist-dcgan", overrides=[*SMALL, "train.batch_size=64"])
    speed = autotune.resolve_speed(cfg, images(), CPU)
    assert batches == [autotune.SCOUT_BATCH, *probed]  # 8 img/s: 30 s / (2 options × 4 steps)
    assert any(noted in note for note in speed.notes) == bool(noted)
    if not probed:
        assert (speed.precision, speed.channels_last, speed.probe) == ("fp32", False, {})


def test_a_real_probe_times_the_runs_own_networks(no_bf16):
    cfg = resolve("mnist-dcgan", overrides=SMALL)
    state = torch.get_rng_state()
    measured = autotune.time_iterations(cfg, images(), torch.device("cpu"),
                                        [("fp32", False), ("fp32", True)], 8, 0.0)  # fmt: skip
    assert set(measured) == {("fp32", False), ("fp32", True)}
    assert all(value > 0 for value in measured.values())
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is untouched


def test_a_resume_on_the_same_machine_reuses_the_choice(no_bf16, fake_probe):
    calls = fake_probe({("fp32", False): 100.0, ("fp32", True): 200.0})
    cfg = resolve("mnist-dcgan", overrides=SMALL)
    first = autotune.resolve_speed(cfg, images(), CPU)
    previous = json.loads(json.dumps(autotune.asdict(first)))
    again = autotune.resolve_speed(cfg, images(), CPU, previous)
    probes = lambda: sum(len(options) > 1 for options in calls)  # noqa: E731 (not the scout)
    assert probes() == 1 and again.channels_last is True and "reused" in again.notes[0]
    previous["machine"] = "another machine"
    autotune.resolve_speed(cfg, images(), CPU, previous)
    assert probes() == 2  # probed afresh


def test_build_run_without_train_uses_plain_settings():
    cfg = autotune.unprobed(resolve("mnist-dcgan"), torch.device("cpu"))
    assert (cfg.train.precision, cfg.train.channels_last) == ("fp32", False)
    assert cfg.train.adam in ("fused", "foreach")


@pytest.mark.parametrize(
    ("text", "value"), [("auto", "auto"), ("true", True), ("False", False), ("on", True)]
)
def test_channels_last_takes_auto_or_a_boolean(text, value):
    got = resolve("mnist-dcgan", overrides=[f"train.channels_last={text}"]).train.channels_last
    assert got == value and type(got) is type(value)


def test_channels_last_refuses_other_words_and_numbers(tmp_path):
    with pytest.raises(UsageError, match="one of auto, true, false"):
        resolve("ring", overrides=["train.channels_last=fast"])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"train": {"channels_last": 2}}))
    with pytest.raises(UsageError, match="channels_last"):
        resolve(config_file=path)
    path.write_text(yaml.safe_dump({"train": {"channels_last": True}}))
    assert resolve(config_file=path).train.channels_last is True


def test_a_run_records_what_auto_chose(tmp_path, no_bf16, fake_probe, capsys):
    fake_probe({("fp32", False): 100.0, ("fp32", True): 200.0})
    data = tmp_path / "digits.npz"
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8, generator=gen).numpy()
    np.savez(data, x_train=x, y_train=np.arange(64) % 10, x_test=x, y_test=np.arange(64) % 10)
    run = tmp_path / "run"
    args = ["train", "--preset", "mnist-dcgan", "--data", str(data), "--out", str(run), "--quiet",
            *SMALL, "train.kimg=0.016", "eval.n_samples=16", "train.ema_bn_samples=0",
            "eval.plots=false", "train.grid_every_kimg=0", "model.conditional=false"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "speed: train.precision=fp32 train.channels_last=true" in err
    config = (run / "config.yaml").read_text()
    assert config.startswith("# auto resolved on ") and "channels_last=true" in config
    assert yaml.safe_load(config)["train"]["channels_last"] == "auto"  # the request is kept
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["kind"] == "speed" and records[0]["channels_last"] is True
    assert json.loads((run / "speed.json").read_text())["asked"]["channels_last"] == "auto"


def test_dry_run_shows_what_auto_resolves_to(tmp_path, monkeypatch, capsys, no_bf16, fake_probe):
    fake_probe({("fp32", False): 500.0, ("fp32", True): 100.0})
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--preset", "mnist-dcgan", "--dry-run", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "train.precision=fp32 train.channels_last=false" in out
    assert yaml.safe_load(out)["train"]["precision"] == "auto"
    assert main(["train", "--preset", "folder-dcgan", "--dry-run"]) == 0  # no folder: later
    assert "resolved at the start of the run" in capsys.readouterr().out


def test_env_reports_versions_flags_and_choices(monkeypatch, capsys):
    from minmax import env

    monkeypatch.setattr(env, "FAMILIES", {"mlp": ("ring", 64)})
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    for word in ("torch", "CPU flags", "avx2", "avx512_bf16", "amx_bf16", "threads", "mlp (ring"):
        assert word in out
    assert main(["env", "--no-probe"]) == 0
    assert "mlp (ring" not in capsys.readouterr().out


def test_points_runs_need_no_probe():
    source = resolve_data(resolve("ring").data)
    cfg = resolve("ring", overrides=["train.batch_size=32"])
    speed = autotune.resolve_speed(cfg, source, CPU)
    assert (speed.precision, speed.channels_last, speed.probe) == ("fp32", False, {})
