"""Checkpoints that are unfinished, corrupt, cut off by a full disk, or of another run."""

import errno
import json
from hashlib import sha256

import pytest
import torch
from torch import nn

from minmax.config import resolve
from minmax.data.sources import resolve_data
from minmax.errors import UsageError
from minmax.train import checkpoint
from minmax.train.checkpoint import (
    check_fingerprint,
    find_checkpoint,
    load_module,
    save_checkpoint,
    verify_checkpoint,
)
from minmax.train.fingerprint import fingerprint


def _net():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    return net, torch.optim.Adam(net.parameters())


def _save(run_dir, images_seen: int, **kwargs):
    net, opt = _net()
    state = {"step": images_seen // 64, "images_seen": images_seen}
    return save_checkpoint(run_dir, {"G": net}, {}, {"G": opt}, {}, state, **kwargs)


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: _flip_a_byte(f / "G.safetensors"), "G.safetensors does not match its SHA-256"),
        (lambda f: (f / "state.json").write_text("{}"), "state.json has 2 bytes"),
        (lambda f: (f / "training.safetensors").unlink(), "training.safetensors is missing"),
        (lambda f: (f / "manifest.json").unlink(), "no manifest.json"),
        (lambda f: (f / "manifest.json").write_text("{not json"), "unreadable manifest.json"),
        (lambda f: (f / "extra.bin").write_bytes(b"x"), "files not in manifest.json: extra.bin"),
        (lambda f: f.rename(f.with_name(f.name + ".tmp")), "unfinished"),
    ],
    ids=[
        "flipped-bit",
        "rewritten",
        "missing-file",
        "no-manifest",
        "bad-manifest",
        "extra-file",
        "staging",
    ],  # fmt: skip
)
def test_a_damaged_newest_checkpoint_is_named_and_skipped(tmp_path, capsys, damage, message):
    _save(tmp_path, 64)
    newest = _save(tmp_path, 128)
    damage(newest)
    assert find_checkpoint(tmp_path).name == "ckpt-000000000064"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ckpt-000000000128" in err[0] and message in err[0], err


def test_a_manifest_cannot_point_outside_its_folder(tmp_path):
    folder = _save(tmp_path, 64)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["../../outside"] = {"bytes": 0, "sha256": "0" * 64}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert "../../outside is missing" in verify_checkpoint(folder)


def test_when_every_checkpoint_is_damaged_none_is_loaded(tmp_path, capsys):
    _flip_a_byte(_save(tmp_path, 64) / "G.safetensors")
    with pytest.raises(UsageError, match="no usable checkpoint.*all 1 are corrupt"):
        find_checkpoint(tmp_path)
    assert "ckpt-000000000064" in capsys.readouterr().err


@pytest.mark.parametrize("failing_write", [1, 4, 5])  # networks.json, state.json, manifest
def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failing_write):
    _save(tmp_path, 64)
    calls = []
    real_write = checkpoint._write_file

    def full_disk(path, data):
        calls.append(path.name)
        if len(calls) == failing_write:
            path.with_name(path.name + ".part").write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    monkeypatch.setattr(checkpoint, "_write_file", full_disk)
    with pytest.raises(UsageError, match="could not write checkpoint .*the disk is full") as err:
        _save(tmp_path, 128)
    assert f"--resume {tmp_path}" in str(err.value)
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir()) == ["ckpt-000000000064"]
    assert find_checkpoint(tmp_path).name == "ckpt-000000000064"


def test_a_pickle_in_safetensors_clothing_is_refused(tmp_path):
    folder = _save(tmp_path, 64)
    torch.save({"weight": torch.zeros(2, 3)}, folder / "G.safetensors")  # a zip of pickles
    assert verify_checkpoint(folder).startswith("G.safetensors has")
    manifest = json.loads((folder / "manifest.json").read_text())  # a forger fixes it up
    data = (folder / "G.safetensors").read_bytes()
    manifest["files"]["G.safetensors"] = {"bytes": len(data), "sha256": sha256(data).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert verify_checkpoint(folder) is None
    with pytest.raises(UsageError, match="cannot read"):  # safetensors never unpickles
        load_module(find_checkpoint(tmp_path), "G", _net()[0])


def _fingerprint(*overrides: str):
    cfg = resolve("ring", overrides=list(overrides))
    return fingerprint(cfg, resolve_data(cfg.data))


def test_fingerprints_allow_a_longer_run_but_not_another_model_or_data(tmp_path):
    folder = _save(tmp_path, 64, fingerprint=_fingerprint())
    check_fingerprint(folder, _fingerprint("train.kimg=9", "eval.n_samples=10", "train.threads=2"))
    with pytest.raises(UsageError, match=r"other config \(model.g_width 128 -> 64\)"):
        check_fingerprint(folder, _fingerprint("model.g_width=64"))
    with pytest.raises(UsageError, match=r"other data \(data.sha256 '"):
        check_fingerprint(folder, _fingerprint("data.name=grid"))
    with pytest.raises(UsageError, match="and 1 more"):
        check_fingerprint(folder, _fingerprint(*[f"train.{k}=0.1" for k in ("lr_g", "lr_d")],
                                               "train.seed=3", "train.beta1=0.3"))  # fmt: skip
    check_fingerprint(_save(tmp_path / "old", 64), _fingerprint("model.g_width=64"))  # none


def test_a_key_added_since_the_checkpoint_passes_at_its_default_only(tmp_path):
    """A run saved by an older minmax, before train.code_revive_kimg existed, resumes."""
    older = _fingerprint()
    del older["config"]["train.code_revive_kimg"]
    folder = _save(tmp_path, 64, fingerprint=older)
    check_fingerprint(folder, _fingerprint())
    switched_on = ["model.codes=8", "model.code_init=box", "train.code_revive_kimg=50"]
    older_coded = _fingerprint(*switched_on[:2])
    del older_coded["config"]["train.code_revive_kimg"]
    folder = _save(tmp_path / "coded", 64, fingerprint=older_coded)
    with pytest.raises(UsageError, match=r"train.code_revive_kimg None -> 50"):
        check_fingerprint(folder, _fingerprint(*switched_on))


def test_image_data_fingerprints_follow_pixels_and_labels(tmp_path):
    import numpy as np

    from minmax.train.fingerprint import data_fingerprint

    x = np.zeros((4, 8, 8), np.uint8)
    y = np.arange(4) % 2
    prints = []
    for i, (xi, yi) in enumerate([(x, y), (x, y), (x + 1, y), (x, 1 - y)]):
        np.savez(tmp_path / f"{i}.npz", x=xi, y=yi)
        cfg = resolve("mnist-dcgan", overrides=[f"data.name={tmp_path / f'{i}.npz'}"])
        prints.append(data_fingerprint(resolve_data(cfg.data)))
    assert prints[0] == prints[1]  # another file name, the same data
    assert prints[0]["shape"] == [1, 8, 8] and prints[0]["n_classes"] == 2
    assert len({p["sha256"] for p in prints}) == 3


def test_a_failed_first_checkpoint_says_there_is_nothing_to_resume(tmp_path, monkeypatch):
    def read_only(path, data):
        raise OSError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(checkpoint, "_write_file", read_only)
    with pytest.raises(UsageError, match=r"\(Permission denied\); there is no earlier checkpoint"):
        _save(tmp_path, 64)
    assert list((tmp_path / "checkpoint").iterdir()) == []
