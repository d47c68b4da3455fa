"""Users' points are trained standardised and shown in their own units (issue 17)."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch

from minmax.cli import main
from minmax.config import resolve
from minmax.data.sources import ToySource, is_points_file, resolve_data
from minmax.data.standardize import InUserUnits, Standardizer
from minmax.errors import UsageError
from minmax.models import rebuild
from minmax.ratio.run import load_run_discriminator
from minmax.sample import load_generator, sample
from minmax.train.checkpoint import find_checkpoint, load_module, read_spec
from minmax.train.loop import train

SCALE, SHIFT = 1000.0, np.array([-2.5e4, 7.3e3])
TINY = ["model.g_width=16", "model.d_width=16", "model.g_depth=2", "model.d_depth=2",
        "model.codes=8", "model.d_fourier=8", "train.batch_size=64", "train.kimg=0.64",
        "train.threads=1", "train.log_every_steps=5", "eval.n_samples=200", "eval.plots=false",
        "train.ema_bn_samples=0"]  # fmt: skip


@pytest.fixture(scope="module")
def points() -> np.ndarray:
    """Four blobs, wider in x than in y, away from the origin: per-coordinate scales differ."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [3.0, 1.0]]) + [5.0, -2.0]
    x = centres[rng.integers(4, size=2000)] + 0.05 * rng.standard_normal((2000, 2))
    return x.astype(np.float32)


def points_config(path, *overrides: str):
    return resolve("points", overrides=[f"data.name={path}", *TINY, *overrides])


@pytest.fixture(scope="module")
def runs(points, tmp_path_factory):
    """The same data in two sets of units, each trained for a few steps."""
    folder = tmp_path_factory.mktemp("runs")
    np.save(folder / "user.npy", points)
    np.save(folder / "scaled.npy", (points * SCALE + SHIFT).astype(np.float32))
    for name in ("user", "scaled"):
        train(points_config(folder / f"{name}.npy"), folder / name, progress=False)
    return folder


def test_encode_decode_round_trip_and_json(points):
    units = Standardizer.fit(torch.from_numpy(points))
    u = units.encode(torch.from_numpy(points))
    assert u.dtype == torch.float32
    assert torch.allclose(u.double().mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(u.double().std(0, unbiased=False), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(units.decode(u), torch.from_numpy(points), atol=1e-5)
    assert Standardizer.from_dict(json.loads(json.dumps(units.to_dict()))) == units


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.array([[1.0, 2.0, 3.0], [4.0, 2.0, 5.0], [7.0, 2.0, 1.0]]), "column 2 (1-based"),
        (np.array([[1.0, 2.0], [1.0, 3.0]]) + [1e6, 0], "column 1 (1-based"),
        (np.array([[1.0, 2.0]]), "single point"),
    ],
)
def test_a_constant_column_or_a_single_point_is_a_one_line_error(tmp_path, capsys, array,
                                                                  fragment):  # fmt: skip
    path = tmp_path / "p.npy"
    np.save(path, array.astype(np.float32))
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "r"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("minmax: error:") and fragment in err[-1], err
    assert str(path) in err[-1]
    assert not (tmp_path / "r").exists()
    # Unstandardised, the same file is the user's call.
    resolve_data(resolve("points", overrides=[f"data.name={path}", "data.standardize=off"]).data)


def test_auto_standardises_points_files_only(tmp_path, points):
    np.save(tmp_path / "p.npy", points)
    assert is_points_file(str(tmp_path / "p.npy")) and not is_points_file("ring")
    assert resolve_data(resolve("ring").data).units is None  # the presets' measured units
    ring = resolve_data(resolve("ring", overrides=["data.standardize=on"]).data)
    assert ring.units is not None and abs(ring.units.std[0] - 0.707) < 0.01
    source = resolve_data(points_config(tmp_path / "p.npy").data)
    assert isinstance(source, ToySource) and source.units is not None
    x, _ = source.sample(4000, torch.Generator().manual_seed(0))
    assert abs(float(x.std(0).min()) - 1) < 0.05  # the networks see standardised points
    with pytest.raises(UsageError, match="data.standardize"):
        resolve("ring", overrides=["data.standardize=maybe"])


def test_the_cli_picks_the_points_preset_for_a_points_file(tmp_path, points, capsys):
    np.save(tmp_path / "p.npy", points)
    assert main(["train", "--data", str(tmp_path / "p.npy"), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "preset: points" in out and "preset 'points'" in err
    assert main(["train", "--preset", "ring", "--data", str(tmp_path / "p.npy"), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "preset: ring" in out and "points" not in err


def test_samples_and_d_come_back_in_the_users_units(runs, points):
    spec = read_spec(find_checkpoint(runs / "user"))
    units = Standardizer.from_dict(spec["units"])
    assert np.allclose(units.mean, points.astype(np.float64).mean(0))
    G = load_generator(runs / "user")
    assert isinstance(G, InUserUnits) and G.z_dim == 4 and G.prior is not None
    plain = {key: value for key, value in spec.items() if key != "units"}
    inner = load_module(find_checkpoint(runs / "user"), "G_ema", rebuild(plain, "G"))
    z = torch.randn(100, 4, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(G(z), units.decode(inner(z)))
    out = runs / "sampled.npy"  # `minmax sample` writes the same user-unit samples
    assert main(["sample", str(runs / "user"), "--n", "50", "--out", str(out)]) == 0
    assert np.array_equal(np.load(out), sample(G, 50, seed=0).numpy())
    D, _ = load_run_discriminator(runs / "user")
    x = torch.from_numpy(points[:100])
    assert torch.allclose(D(x), D.net(units.encode(x)))
    assert D.state_dict().keys() == D.net.state_dict().keys()  # files load either way
    assert copy.deepcopy(D)(x).equal(D(x))


def test_other_units_train_the_same_standardised_networks(runs):
    folders = [find_checkpoint(runs / name) for name in ("user", "scaled")]
    for role in ("G", "D", "G_ema"):
        a, b = (load_module(f, role, rebuild(read_spec(f), role[0])) for f in folders)
        for key, value in a.state_dict().items():
            assert torch.allclose(value, b.state_dict()[key], rtol=1e-4, atol=1e-5), (role, key)
    user = sample(load_generator(runs / "user"), 500, seed=3).double()
    scaled = sample(load_generator(runs / "scaled"), 500, seed=3).double()
    back = (scaled - torch.from_numpy(SHIFT)) / SCALE
    assert (back - user).abs().max() < 1e-4  # against blobs 3 apart, std 0.05
    # D(x) at the same physical points agrees too.
    (D_user, _), (D_scaled, _) = (load_run_discriminator(runs / n) for n in ("user", "scaled"))
    x = user.float()
    assert torch.allclose(D_user(x), D_scaled((x.double() * SCALE + torch.from_numpy(SHIFT))
                                              .float()), atol=1e-3)  # fmt: skip


def test_a_resume_on_the_same_points_in_other_units_is_refused(runs):
    cfg = points_config(runs / "scaled.npy", "train.kimg=1")
    with pytest.raises(UsageError, match="other data"):
        train(cfg, runs / "user", resume=True, progress=False)


def test_a_resume_that_switches_standardisation_is_refused(runs):
    cfg = points_config(runs / "user.npy", "train.kimg=1", "data.standardize=off")
    with pytest.raises(UsageError, match="units"):
        train(cfg, runs / "user", resume=True, progress=False)


def test_the_ratio_tools_work_in_the_users_units(runs, points, tmp_path):
    from minmax.ratio import calibrate, load_calibrated
    from minmax.ratio.calibrate import CalibrationConfig
    from minmax.ratio.run import held_out, load_run_config

    run = tmp_path / "run"
    shutil.copytree(runs / "user", run)
    result = calibrate(run, CalibrationConfig(kimg=0.5, n_eval=200, n_bootstrap=10))
    assert "units" in result.networks
    D, _ = load_calibrated(run, load_generator(run))
    assert isinstance(D, InUserUnits)
    reals = held_out(load_run_config(run), 500, seed=0)  # what D is fine-tuned and judged on
    assert np.allclose(reals.x.mean(0).numpy(), points.mean(0), atol=0.2)  # the user's units
    assert np.allclose(reals.fit.sample(500, torch.Generator())[0].mean(0), points.mean(0),
                       atol=0.2)  # fmt: skip
    assert main(["diagnose", str(run), "--n", "200"]) == 0
    assert main(["sample", str(run), "--correct", "sir", "--n", "20", "--out",
                 str(tmp_path / "c.npy")]) == 0  # fmt: skip
    corrected = np.load(tmp_path / "c.npy")
    assert np.abs(corrected.mean(0) - points.mean(0)).max() < 2  # in the data's units


def test_the_final_metrics_are_scored_in_the_users_units(tmp_path, monkeypatch):
    import minmax.toy_report

    scored = []
    real_mode_report = minmax.toy_report.mode_report

    def spy(x, *args, **kwargs):
        scored.append(x)
        return real_mode_report(x, *args, **kwargs)

    monkeypatch.setattr(minmax.toy_report, "mode_report", spy)
    cfg = resolve("ring", overrides=[*TINY, "data.standardize=on"])
    summary = train(cfg, tmp_path / "r", progress=False)
    assert "units" in read_spec(find_checkpoint(tmp_path / "r"))
    fake = sample(
        load_generator(tmp_path / "r"), cfg.eval.n_samples, minmax.toy_report.EVAL_SEED_OFFSET
    )
    assert torch.allclose(scored[0], fake) and "hq_fraction" in summary
    G = load_generator(tmp_path / "r")
    z = torch.zeros(1, G.z_dim)
    assert not torch.allclose(G.net(z), G(z))  # a real map, not the identity
