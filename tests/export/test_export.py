"""``minmax export``: a standalone folder that loads, in a fresh process, to the run's own G.

A tiny class-conditional DCGAN run is exported; a fresh interpreter that only calls
``minmax.load_generator`` draws bit-identical images to ``minmax sample RUN``; every bad input
is one line, exit 2, and leaves nothing half-written.
"""

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import minmax
from minmax.cli import main
from minmax.config import resolve
from minmax.errors import UsageError
from minmax.images import to_uint8
from minmax.sample import generate, load_generator
from minmax.store import find_checkpoint
from minmax.train.loop import train
from tests.bar_digits import bar_digits

TINY = [
    "model.g_channels=8",
    "model.d_channels=8",
    "model.z_dim=8",
    "model.conditional=true",
    "train.batch_size=16",
    "train.kimg=0.1",
    "train.threads=1",
    "train.channels_last=false",
]
# What a run's evaluation writes to metrics.jsonl (minmax.evaluate.score_images), so that the
# card can be checked against the run's own figures without training a feature network here.
EVAL = {
    "kind": "eval", "metric": "fd100_digits", "n": 100, "value": 12.3456,
    "protocol": {
        "extractor": {"name": "digits", "weights_sha256": "ab12" * 16, "input_size": [28, 28]},
        "generated": "G_ema at 0.1 kimg, seed 1", "reference": "digits.npz (test), 48 images",
        "seed": 1,
    },
    "step": 7, "kimg": 0.112,
}  # fmt: skip
FILES = {"README.md", "config.json", "model.safetensors", "samples.png"}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished tiny run on 48 labelled 28×28 'digits' in 3 classes, with one eval record."""
    root = tmp_path_factory.mktemp("export")
    x, y = bar_digits(48, 3, np.random.default_rng(0))
    np.savez(root / "digits.npz", x=x, y=y)
    cfg = resolve("mnist-dcgan", overrides=[f"data.name={root / 'digits.npz'}", *TINY])
    train(cfg, root / "run", progress=False)
    with open(root / "run" / "metrics.jsonl", "a") as f:
        f.write(json.dumps(EVAL) + "\n")
    return root / "run"


@pytest.fixture(scope="module")
def exported(run) -> Path:
    out = run.parent / "exported"
    assert main(["export", str(run), "--out", str(out), "--license", "mit"]) == 0
    return out


def usage_error(capsys, argv: list[str], fragment: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("minmax: error:") and len(err.splitlines()) == 1, err
    assert fragment in err, err
    return err


def test_the_export_is_a_hub_style_model_folder(run, exported):
    assert {p.name for p in exported.iterdir()} == FILES
    assert not list(exported.parent.glob(".*.tmp"))  # the staging folder was renamed
    checkpoint = find_checkpoint(run)
    weights = (checkpoint / "G_ema.safetensors").read_bytes()
    assert (exported / "model.safetensors").read_bytes() == weights

    config = json.loads((exported / "config.json").read_text())
    spec = json.loads((checkpoint / "networks.json").read_text())
    data = json.loads((checkpoint / "fingerprint.json").read_text())["data"]
    assert config["format"] == "minmax-generator" and config["format_version"] == 1
    assert (config["arch"], config["G"], config["network"]) == ("dcgan", spec["G"], "G_ema")
    assert config["z_dim"] == 8 and config["n_classes"] == 3 and config["class_names"] is None
    assert config["output"] == {
        "kind": "images", "shape": [1, 28, 28], "range": [-1.0, 1.0], "dtype": "float32"
    }  # fmt: skip
    assert config["data"]["name"] == "digits.npz" and config["data"]["sha256"] == data["sha256"]
    assert config["training"]["preset"] == "mnist-dcgan" and config["training"]["kimg"] == 0.112
    assert config["minmax_version"] and "units" not in config

    card = (exported / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["license"] == "mit" and front["library_name"] == "minmax"
    assert {"gan", "dcgan", "class-conditional"} <= set(front["tags"])
    # The run's own figures, with their protocol.
    row = "| fd100_digits | 12.35 | 100 | digits.npz (test), 48 images | digits (ab12ab12ab12…) |"
    assert row in card and "ab12" * 16 in card
    machine = json.loads((run / "speed.json").read_text())["machine"]
    assert f"Machine: {machine}" in card and "Preset `mnist-dcgan`" in card
    assert "0.112 kimg" in card and "minmax.load_generator(" in card
    with Image.open(exported / "samples.png") as image:
        assert image.size == (8 * 30 + 2, 8 * 30 + 2)  # 64 tiles of 28 px, 2 px apart


def test_a_fresh_process_loads_the_export_to_the_runs_very_images(
    run, exported, tmp_path, monkeypatch
):
    """Only minmax.load_generator and generate, in a new interpreter: no minmax.train, no onnx;
    the images equal those of 'minmax sample RUN' (also a fresh process) bit for bit."""
    script = (
        "import sys, numpy as np, minmax\n"
        "G = minmax.load_generator(sys.argv[1])\n"
        "x, y = minmax.generate(G, 24, seed=5)\n"
        "from minmax.images import to_uint8\n"
        "np.savez(sys.argv[2], x=to_uint8(x)[:, 0].numpy(), y=y.numpy())\n"
        "print(sorted(m for m in sys.modules if m.startswith(('minmax.train', 'onnx'))))\n"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", script, str(exported), str(tmp_path / "export.npz")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.strip() == "[]"
    cli = subprocess.run(
        [sys.executable, "-m", "minmax", "sample", str(run), "--n", "24", "--seed", "5",
         "--out", str(tmp_path / "run.npz")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    with np.load(tmp_path / "run.npz") as a, np.load(tmp_path / "export.npz") as b:
        assert np.array_equal(a["x"], b["x"]) and np.array_equal(a["y"], b["y"])
    # In this process too, to the last bit of the floats, and by the command on the export.
    x_run, y_run = generate(load_generator(run), 24, seed=5)
    x_export, y_export = generate(minmax.load_generator(exported), 24, seed=5)
    assert torch.equal(x_run, x_export) and torch.equal(y_run, y_export)
    monkeypatch.chdir(tmp_path)
    assert main(["sample", str(exported), "--n", "24", "--seed", "5", "--out", "x.npz"]) == 0
    with np.load("x.npz") as again:
        assert np.array_equal(again["x"], to_uint8(x_run)[:, 0].numpy())
    assert main(["interpolate", str(exported), "--steps", "2", "--out", "walk.gif"]) == 0


def edited(exported: Path, tmp_path: Path, change) -> Path:
    """A copy of the export with its config.json changed by ``change(config)``."""
    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    config = json.loads((bad / "config.json").read_text())
    change(config)
    (bad / "config.json").write_text(json.dumps(config))
    return bad


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda c: c.update(arch="stylegan9"), "unknown architecture 'stylegan9'"),
        (lambda c: c.update(format_version=2), "format version 2, newer than this minmax reads"),
        (lambda c: c["G"].update(width=16), "does not match the network"),
        (lambda c: c["G"].update(depth=3), "\"G\" arguments do not fit architecture 'dcgan'"),
        (lambda c: c.pop("format"), "is not a minmax export"),
    ],
    ids=["unknown-arch", "newer-version", "weights-shapes", "unknown-argument", "not-minmax"],
)
def test_a_bad_export_is_refused_in_one_line(exported, tmp_path, capsys, change, fragment):
    bad = edited(exported, tmp_path, change)
    out = tmp_path / "samples.npz"
    err = usage_error(capsys, ["sample", str(bad), "--n", "4", "--out", str(out)], fragment)
    assert str(bad / "config.json") in err or str(bad / "model.safetensors") in err
    assert not out.exists()
    with pytest.raises(UsageError, match=fragment.split("'")[0]):
        minmax.load_generator(bad)


def test_an_export_holds_one_network(exported, tmp_path, capsys):
    out = tmp_path / "s.npz"
    argv = ["sample", str(exported), "--network", "G", "--out", str(out)]
    usage_error(capsys, argv, "holds G_ema only")
    assert not out.exists()


def test_export_refuses_bad_input_and_writes_nothing(run, exported, tmp_path, capsys):
    no_checkpoint = tmp_path / "stopped"
    no_checkpoint.mkdir()
    shutil.copy(run / "config.yaml", no_checkpoint)
    out = tmp_path / "new" / "export"
    usage_error(capsys, ["export", str(no_checkpoint), "--out", str(out)], "no checkpoint in")
    usage_error(capsys, ["export", str(tmp_path / "nope"), "--out", str(out)], "not found")
    usage_error(capsys, ["export", str(exported), "--out", str(out)], "no checkpoint in")
    usage_error(capsys, ["export", str(run), "--out", str(out), "--license", "my own"], "license")
    assert not (tmp_path / "new").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    usage_error(capsys, ["export", str(run), "--out", str(busy)], "is not empty")
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    usage_error(capsys, ["export", str(run), "--out", str(busy / "notes.txt")], "is a file")
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder is filled
    assert main(["export", str(run), "--out", str(empty)]) == 0
    assert {p.name for p in empty.iterdir()} == FILES


def test_a_failed_export_leaves_nothing(run, tmp_path, capsys, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("minmax.export.folder.write_card", full_disk)
    out = tmp_path / "a" / "b" / "export"
    usage_error(capsys, ["export", str(run), "--out", str(out)], "No space left on device")
    assert list(tmp_path.iterdir()) == []  # no export, no staging folder, no parents made
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # the onnx extra not installed
    usage_error(capsys, ["export", str(run), "--out", str(out), "--onnx"], "minmax[onnx]")
    assert list(tmp_path.iterdir()) == []


def test_a_points_export_gives_samples_in_the_files_units(tmp_path, monkeypatch):
    """The points preset's G (codes, standardised units) exported as G, loaded back as G."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    centre = rng.integers(0, 3, 400)[:, None]
    points = np.array([1000.0, 0.0]) + centre * [40.0, 3.0] + rng.normal(size=(400, 2))
    np.save("points.npy", points)  # millimetres with an offset: far from standardised
    args = ["--quiet", "--data", "points.npy", "--out", "run", "train.kimg=0.2",
            "eval.plots=false", "train.batch_size=64", "model.g_width=16", "model.d_width=16",
            "train.threads=1"]  # fmt: skip
    assert main(["train", *args]) == 0
    assert main(["export", "run", "--out", "export", "--network", "G"]) == 0
    config = json.loads(Path("export/config.json").read_text())
    assert config["output"] == {"kind": "points", "shape": [2], "range": None, "dtype": "float32"}
    assert config["network"] == "G" and set(config["units"]) == {"mean", "std"}
    x_run, _ = generate(load_generator("run", "G"), 500, seed=1)
    x_export, _ = generate(minmax.load_generator("export"), 500, seed=1)
    assert torch.equal(x_run, x_export) and float(x_export[:, 0].mean()) > 900
    assert "G maps back to the data's units" in Path("export/README.md").read_text()
