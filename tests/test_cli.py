"""The console script: a tiny end-to-end run, and every bad input as a one-line exit 2."""

import json
import os
import shutil
import socket
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
    _expect_usage_error(capsys, ["train", "--resume", "nowhere"], "'nowhere' does not exist")
    (in_tmp / "empty" / "config.yaml").write_text("data: {name: ring}\n")
    not_yet = "no checkpoint in 'empty' yet: its run has not finished its first one"
    _expect_usage_error(capsys, ["sample", "empty", "--out", "x.npz"], not_yet)
    _expect_usage_error(capsys, ["sample", "nowhere", "--out", "x.npz"], "not found")


def test_a_run_killed_before_its_first_checkpoint_can_be_continued(in_tmp, capsys):
    """Before config.yaml: the same --out starts it again (its dead lock taken over); after:
    --resume starts it over from step 0, its dead attempt's log set aside. (Bit for bit:
    tests/train/test_crash.py.) A folder whose checkpoints are all corrupt is not restarted."""
    run = in_tmp / "run"
    run.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (run / ".lock").write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname()}))
    (run / "config.yaml.part").write_text("data: {na")
    _expect_usage_error(capsys, ["train", "--resume", "run"], "start it again with --out run")
    assert _train("--out", "run", "train.kimg=0.2", "eval.plots=false") == 0
    assert "taking the lock over" in capsys.readouterr().err
    shutil.rmtree(run / "checkpoint")  # as if killed before its first checkpoint
    assert main(["train", "--quiet", "--resume", "run"]) == 0
    err = capsys.readouterr().err
    assert "no checkpoint in 'run' yet: starting from step 0 with its config.yaml" in err, err
    assert "metrics.before-restart.jsonl" in err and (run / "metrics.before-restart.jsonl").exists()
    assert [line for line in (run / "metrics.jsonl").open() if '"final"' in line]
    for folder in (run / "checkpoint").iterdir():
        (folder / "G.safetensors").write_bytes(b"rot")
    assert main(["train", "--resume", "run"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no usable checkpoint in 'run': all 1 are corrupt" in last, last
    assert (run / "config.yaml").is_file()  # a run asked to resume is never deleted


def test_a_folder_another_run_is_locking_is_left_alone(in_tmp, capsys):
    (in_tmp / "busy").mkdir()  # a run that has just started there: only its lock so far
    (in_tmp / "busy" / ".lock").write_text(
        json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    )
    assert main(["train", "--out", "busy", *TINY]) == 2
    assert "'busy' is in use by PID" in capsys.readouterr().err
    assert [p.name for p in (in_tmp / "busy").iterdir()] == [".lock"]


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
