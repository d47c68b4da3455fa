"""The console script: a tiny end-to-end run, and every bad input as a one-line exit 2."""

import subprocess
import sys

import numpy as np
import pytest

from minmax.cli import main

TINY = [
    "model.g_width=16",
    "model.d_width=16",
    "model.g_depth=1",
    "model.d_depth=1",
    "train.batch_size=64",
    "eval.n_samples=100",
    "train.threads=1",
]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _train(*args: str) -> int:
    return main(["train", "--quiet", *args, *TINY])


def test_train_sample_and_resume(in_tmp, capsys):
    assert _train("train.kimg=0.5", "eval.plots=false") == 0
    run = in_tmp / "runs" / "00000-ring"
    assert list((run / "checkpoint").glob("ckpt-*/manifest.json"))
    out = capsys.readouterr().out
    assert "modes_captured" in out and "hq_fraction" in out
    # Numbered run folders: the next one gets the next number.
    assert _train("train.kimg=0.2", "eval.plots=false") == 0
    assert (in_tmp / "runs" / "00001-ring").is_dir()
    for name in ("s.npz", "s.npy", "s.png"):
        assert main(["sample", str(run), "--n", "50", "--out", name]) == 0
    assert np.load(in_tmp / "s.npz")["x"].shape == (50, 2)
    assert np.load(in_tmp / "s.npy").shape == (50, 2)
    a = np.load(in_tmp / "s.npy")
    main(["sample", str(run), "--n", "50", "--out", "t.npy"])
    assert np.array_equal(a, np.load(in_tmp / "t.npy"))  # same seed, same samples
    assert main(["train", "--quiet", "--resume", str(run), "train.kimg=1"]) == 0
    assert "final" in (run / "metrics.jsonl").read_text()


def _expect_usage_error(capsys, argv, fragment):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("minmax: error:"), err
    assert len(err.splitlines()) == 1, err
    assert fragment in err, err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["loss.objective=nonsaturatin"], "did you mean 'nonsaturating'"),
        (["--data", "rign"], "did you mean 'ring'"),
        (["--preset", "gird"], "did you mean 'grid'"),
        (["train.lr_d"], "section.key=value"),
        (["train.batch_size=big"], "must be int"),
        (["train.lr_g=0"], "must be a positive number"),
        (["train.batch_size=-4"], "must be a positive number"),
        (["model.arch=mpl"], "did you mean 'mlp'"),
        (["--preset", "ring", "--config", "x.yaml"], "not allowed with"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(in_tmp, capsys, args, fragment):
    _expect_usage_error(capsys, ["train", *args], fragment)
    assert not (in_tmp / "runs").exists()


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.array([[0.0, np.nan], [1.0, 2.0]]), "NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), "Inf"),
        (np.zeros((2, 2, 2)), "3-D array"),
        (np.zeros((0, 2)), "no points"),
    ],
)
def test_bad_points_files(in_tmp, capsys, array, fragment):
    np.save(in_tmp / "p.npy", array)
    assert main(["train", "--data", "p.npy", *TINY]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "p.npy" in err
    assert fragment.lower() in err.lower(), err
    assert not (in_tmp / "runs").exists()


def test_existing_run_folder_is_never_overwritten(in_tmp, capsys):
    out = in_tmp / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    _expect_usage_error(capsys, ["train", "--out", str(out), *TINY], "already exists")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_resume_and_sample_need_a_checkpoint(in_tmp, capsys):
    (in_tmp / "empty").mkdir()
    _expect_usage_error(capsys, ["train", "--resume", "empty"], "not a run folder")
    (in_tmp / "empty" / "config.yaml").write_text("data: {name: ring}\n")
    _expect_usage_error(capsys, ["train", "--resume", "empty"], "no checkpoint")
    _expect_usage_error(capsys, ["sample", "empty", "--out", "x.npz"], "no checkpoint")
    _expect_usage_error(capsys, ["sample", "nowhere", "--out", "x.npz"], "not found")


def test_sample_rejects_bad_arguments(in_tmp, capsys):
    assert _train("train.kimg=0.1", "eval.plots=false") == 0
    run = str(in_tmp / "runs" / "00000-ring")
    capsys.readouterr()
    _expect_usage_error(capsys, ["sample", run, "--out", "x.txt"], ".png, .npy or .npz")
    _expect_usage_error(capsys, ["sample", run, "--n", "0", "--out", "x.npz"], "positive")


def test_dry_run_prints_the_resolved_config(in_tmp, capsys):
    assert main(["train", "--dry-run", "--preset", "grid", "train.lr_d=1e-4"]) == 0
    out = capsys.readouterr().out
    assert "lr_d: 0.0001" in out and "name: grid" in out
    assert not (in_tmp / "runs").exists()
    assert main(["train", "--list-presets"]) == 0
    assert "ring" in capsys.readouterr().out.split()


def test_console_script_is_installed():
    done = subprocess.run(
        [sys.executable, "-m", "minmax", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "minmax train" in done.stdout
    done = subprocess.run(
        ["minmax", "train", "train.lr_d=-1"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "train.lr_d" in done.stderr
