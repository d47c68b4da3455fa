"""`minmax calibrate`, `sample --correct` and `diagnose` end to end on tiny runs, and every
bad input as a one-line exit 2."""

import hashlib
import importlib
import json
import re
import shutil

import numpy as np
import pytest

from minmax.cli import main
from minmax.train.checkpoint import find_checkpoint
from tests.bar_digits import bar_digits

TOY = [
    "model.g_width=16",
    "model.d_width=16",
    "model.g_depth=1",
    "model.d_depth=1",
    "train.batch_size=64",
    "eval.n_samples=100",
    "eval.plots=false",
    "train.threads=1",
    "train.kimg=0.5",
]
IMAGES = [
    "model.g_channels=8",
    "model.d_channels=8",
    "model.z_dim=8",
    "model.conditional=true",
    "train.batch_size=16",
    "train.threads=1",
    "train.kimg=0.1",
    "eval.plots=false",
]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("toy") / "run"
    assert main(["train", "--quiet", "--out", str(run), *TOY]) == 0
    return run


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A class-conditional DCGAN on 28×28 'digits' (a bar whose position is the class),
    with a test split: calibration must fit and score on it, not on the training images."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    (x, y), (x_test, y_test) = bar_digits(48, 3, rng), bar_digits(60, 3, rng)
    np.savez(folder / "digits.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    run = folder / "run"
    data = ["--preset", "mnist-dcgan", "--data", str(folder / "digits.npz")]
    assert main(["train", "--quiet", *data, "--out", str(run), *IMAGES]) == 0
    return run


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_calibrate_writes_d_and_json_beside_the_run(toy_run, capsys):
    checkpoint = _digest(find_checkpoint(toy_run))
    assert main(["calibrate", str(toy_run), "--kimg", "2", "--n-eval", "400", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    for fragment in ("held-out V_D", "JSD >= log 2 - V_D/2", "KL(P||Q)", "KL(Q||P)", "|D - log"):
        assert fragment in out, out
    folder = toy_run / "calibrated"
    assert (folder / "D.safetensors").is_file()
    meta = json.loads((folder / "calibration.json").read_text())
    assert meta["kimg"] == 2 and meta["seed"] == 1 and meta["network"] == "G_ema"
    assert meta["steps"] == 32 and meta["data"]["n_eval"] == 400  # 2000 reals / batch 64
    assert meta["divergences"]["v_d"]["value"] < meta["v_d_before"]  # fit on V_D: it fell
    jsd = meta["divergences"]["jsd_bound"]
    assert jsd["value"] == pytest.approx(np.log(2) - meta["divergences"]["v_d"]["value"] / 2)
    assert jsd["low"] <= jsd["value"] <= jsd["high"] and jsd["reference"] > 0
    assert meta["toy"]["ratio_error_median"] >= 0 and meta["toy"]["kde_samples"] > 0
    assert _digest(find_checkpoint(toy_run)) == checkpoint  # the run's own D is untouched


def test_corrected_sampling_and_diagnosis_on_a_toy_run(toy_run, tmp_path, capsys):
    if not (toy_run / "calibrated").is_dir():
        assert main(["calibrate", str(toy_run), "--kimg", "1", "--n-eval", "300"]) == 0
    for method, extra in (("drs", ["--accept-target", "0.5"]), ("mh", ["--chain-length", "5"]),
                          ("sir", [])):  # fmt: skip
        out = tmp_path / f"{method}.npy"
        argv = ["sample", str(toy_run), "--correct", method, "--n", "200", "--out", str(out)]
        assert main([*argv, *extra]) == 0
        assert np.load(out).shape == (200, 2)
        line = capsys.readouterr().out
        assert f"{method}: kept 200" in line and "acceptance" in line and "per sample" in line
    line = _sample_line(toy_run, tmp_path, capsys, "--accept-target", "0.3")
    assert abs(float(re.search(r"acceptance ([\d.]+)%", line).group(1)) - 30) < 2, line

    assert main(["diagnose", str(toy_run), "--out", str(tmp_path / "d"), "--n", "400"]) == 0
    table = capsys.readouterr().out
    assert "coverage" in table and "G/data (exact)" in table
    report = json.loads((tmp_path / "d" / "diagnose.json").read_text())
    assert report["groups"] == "mode" and len(report["rows"]) == 8
    coverage = [r["coverage"] for r in report["rows"]]
    assert coverage == sorted(coverage) and all(c > 0 for c in coverage)  # worst first
    assert all(r["flagged"] == (r["coverage"] < 0.5) for r in report["rows"])
    assert sum(r["n_top"] for r in report["rows"]) == report["n_top"] == 20
    assert (tmp_path / "d" / "under_covered.png").stat().st_size > 0


def _sample_line(run, tmp_path, capsys, *extra):
    argv = ["sample", str(run), "--correct", "drs", "--n", "300", "--out", str(tmp_path / "s.npy")]
    assert main([*argv, *extra]) == 0
    return capsys.readouterr().out


def test_conditional_image_run(image_run, tmp_path, capsys):
    assert main(["calibrate", str(image_run), "--kimg", "0.2", "--n-eval", "30"]) == 0
    meta = json.loads((image_run / "calibrated" / "calibration.json").read_text())
    assert meta["data"]["split"] == "test" and meta["data"]["n_eval"] == 30
    assert meta["data"]["n_fit"] == 30 and "reference" not in json.dumps(meta["toy"])
    capsys.readouterr()
    _expect_usage_error(
        capsys,
        ["sample", str(image_run), "--correct", "drs", "--out", str(tmp_path / "x.npz")],
        "needs --class",
    )
    out = tmp_path / "one.npz"
    argv = ["sample", str(image_run), "--correct", "sir", "--class", "2", "--n", "20"]
    assert main([*argv, "--out", str(out)]) == 0
    with np.load(out) as f:
        assert f["x"].shape == (20, 28, 28) and (f["y"] == 2).all()
    assert main(["diagnose", str(image_run), "--out", str(tmp_path / "d"), "--n", "30"]) == 0
    out = capsys.readouterr().out
    assert "class" in out and "G share (probe)" in out and "linear probe" in out
    report = json.loads((tmp_path / "d" / "diagnose.json").read_text())
    assert report["groups"] == "class" and sorted(r["class"] for r in report["rows"]) == [0, 1, 2]
    assert report["probe"]["n_fit"] == 30 and 0 <= report["probe"]["accuracy"] <= 1
    for row in report["rows"]:  # G's class shares read from 10,000 of its samples
        assert row["g_share_low"] <= row["g_share"] <= row["g_share_high"]
        probed = row["g_share_high"] < 0.5
        assert row["flagged"] == (probed or row["coverage_high"] < 0.5)
        assert ("probe on G" in row["flagged_by"]) == probed
    assert (tmp_path / "d" / "under_covered.png").is_file()


def _expect_usage_error(capsys, argv, fragment):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("minmax: error:"), err
    assert len(err.splitlines()) == 1, err
    assert fragment in err, err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["calibrate", "RUN", "--kimg", "0"], "budget --kimg must be positive"),
        (["calibrate", "RUN", "--kimg", "-5"], "budget --kimg must be positive"),
        (["calibrate", "RUN", "--lr", "0"], "--lr must be positive"),
        (["sample", "RUN", "--correct", "drs", "--accept-target", "0"], "(0, 1]"),
        (["sample", "RUN", "--correct", "drs", "--accept-target", "1.5"], "(0, 1]"),
        (["sample", "RUN", "--correct", "drs", "--accept-target", "-0.2"], "(0, 1]"),
        (["sample", "RUN", "--accept-target", "0.5"], "add --correct drs"),
        (["sample", "RUN", "--correct", "mh", "--accept-target", "0.5"], "drs only"),
        (["sample", "RUN", "--correct", "drs", "--truncation", "1"], "truncation"),
        (["sample", "RUN", "--correct", "xyz"], "invalid choice"),
        (["diagnose", "RUN", "--calibrate-kimg", "0"], "--calibrate-kimg must be positive"),
        (["diagnose", "RUN", "--calibrate-kimg", "-1"], "--calibrate-kimg must be positive"),
    ],
)
def test_bad_input_is_one_line_exit_2(toy_run, tmp_path, capsys, args, fragment):
    argv = [str(toy_run) if a == "RUN" else a for a in args]
    if argv[0] == "sample":
        argv += ["--out", str(tmp_path / "x.npy")]
    _expect_usage_error(capsys, argv, fragment)
    assert not (tmp_path / "x.npy").exists()


def test_missing_pieces_are_usage_errors(toy_run, tmp_path, capsys):
    uncalibrated = tmp_path / "uncalibrated"
    shutil.copytree(toy_run, uncalibrated, ignore=shutil.ignore_patterns("calibrated"))
    _expect_usage_error(
        capsys,
        ["sample", str(uncalibrated), "--correct", "drs", "--out", str(tmp_path / "x.npy")],
        f"run 'minmax calibrate {uncalibrated}' first",
    )
    no_checkpoint = tmp_path / "no_checkpoint"
    no_checkpoint.mkdir()
    shutil.copy(toy_run / "config.yaml", no_checkpoint / "config.yaml")
    _expect_usage_error(capsys, ["calibrate", str(no_checkpoint)], "no checkpoint")
    _expect_usage_error(capsys, ["diagnose", str(no_checkpoint)], "no checkpoint")
    _expect_usage_error(capsys, ["calibrate", str(tmp_path / "nowhere")], "not a run folder")


def test_a_run_without_its_discriminator(toy_run, tmp_path, capsys):
    run = tmp_path / "no_d"
    shutil.copytree(toy_run, run, ignore=shutil.ignore_patterns("calibrated"))
    (find_checkpoint(run) / "D.safetensors").unlink()
    assert main(["calibrate", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("minmax: error:") and "checkpoint" in err[-1], err


def test_a_stale_calibration_is_refused(toy_run, tmp_path, capsys):
    if not (toy_run / "calibrated").is_dir():
        assert main(["calibrate", str(toy_run), "--kimg", "1", "--n-eval", "300"]) == 0
    argv = ["sample", str(toy_run), "--correct", "drs", "--network", "G"]
    _expect_usage_error(capsys, [*argv, "--out", str(tmp_path / "x.npy")], "another generator")


def test_diagnose_calibrates_first_unless_told_not_to(toy_run, tmp_path, capsys, monkeypatch):
    """The training D is overconfident: diagnose makes a calibrated D when the run has none
    (and keeps it; calibrate's default budget, recorded), or reads the training D under
    --uncalibrated, saying so."""
    module = importlib.import_module("minmax.ratio.calibrate")  # the package exports the function
    monkeypatch.setattr(module, "AUTO_KIMG", (0.1, 0.2))  # a toy draws afresh: the top
    run = tmp_path / "fresh"
    shutil.copytree(toy_run, run, ignore=shutil.ignore_patterns("calibrated", "diagnose"))
    argv = ["diagnose", str(run), "--n", "200", "--out", str(tmp_path / "d")]
    assert main([*argv, "--uncalibrated"]) == 0
    assert "NOT calibrated" in capsys.readouterr().out and not (run / "calibrated").exists()
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert f"calibrating D first ('minmax calibrate {run}')" in err and "calibrated D" in out
    assert json.loads((run / "calibrated" / "calibration.json").read_text())["kimg"] == 0.2
    report = json.loads((tmp_path / "d" / "diagnose.json").read_text())
    assert main([*argv[:-1], str(tmp_path / "u"), "--uncalibrated"]) == 0  # even beside one
    assert "NOT calibrated" in capsys.readouterr().out
    for row in report["rows"]:
        assert row["coverage_low"] <= row["coverage"] <= row["coverage_high"]
        assert row["flagged"] == (row["coverage_high"] < 0.5) and row["ess"] > 0
