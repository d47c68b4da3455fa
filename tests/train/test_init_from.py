"""Fine-tuning (``minmax train --init-from``) and FreezeD (``train.freeze_d``), at tiny sizes."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from minmax.cli import main
from minmax.config import resolve
from minmax.data.sources import resolve_data
from minmax.export import export_run
from minmax.models import build_networks, d_blocks
from minmax.train.checkpoint import find_checkpoint
from minmax.train.loop import build_run
from tests.bar_digits import bar_digits

TINY = [
    "model.g_channels=8",
    "model.d_channels=8",
    "model.z_dim=8",
    "model.conditional=true",
    "train.batch_size=16",
    "train.threads=1",
    "train.log_every_steps=2",
    "train.checkpoint_every_kimg=1000",
    "train.channels_last=false",  # runs compared bit for bit: no layout chosen by timing
    "train.ema_warmup_kimg=0",
    "eval.plots=false",
]
NETWORKS = ("G", "D", "G_ema")
STEP0 = "ckpt-000000000000"


def _digits(path, n_classes):
    """48 labelled 28×28 'digits': a bright bar whose position encodes the class."""
    x, y = bar_digits(48, n_classes, np.random.default_rng(n_classes))
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {"three": _digits(root / "three.npz", 3), "two": _digits(root / "two.npz", 2)}


@pytest.fixture(scope="module")
def source(tmp_path_factory, data):
    """A finished tiny conditional DCGAN run (3 classes): the run fine-tuning starts from."""
    run = tmp_path_factory.mktemp("source") / "run"
    args = ["--preset", "mnist-dcgan", "--data", str(data["three"]), "--out", str(run)]
    assert main(["train", "--quiet", *args, *TINY, "train.kimg=0.048"]) == 0
    return run


def _train(*args):
    return main(["train", "--quiet", *args])


def _weights(folder, name):
    return load_file(str(folder / f"{name}.safetensors"))


def _one_line_error(capsys, fragment):
    err = capsys.readouterr().err.strip()
    assert err.startswith("minmax: error:") and len(err.splitlines()) == 1, err
    assert fragment in err, err
    return err


def test_init_from_a_run_starts_from_its_weights_with_fresh_training_state(
    tmp_path, source, capsys
):
    new = tmp_path / "new"
    assert _train("--init-from", str(source), "--out", str(new), "train.ema_bn_samples=0",
                  "train.kimg=0.032") == 0  # fmt: skip
    start, theirs = new / "checkpoint" / STEP0, find_checkpoint(source)
    for name in NETWORKS:
        a, b = _weights(start, name), _weights(theirs, name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    state = json.loads((start / "state.json").read_text())
    assert state["step"] == 0 and state["images_seen"] == 0
    assert all(not opt["scalars"] for opt in state["optimizers"].values())  # no Adam moments
    assert not any(k.startswith(("G/", "D/")) for k in _weights(start, "training"))
    # Its own folder and config; the source's config and weights' hashes recorded.
    record = json.loads((new / "init_from.json").read_text())
    assert record["kind"] == "run" and record["config"]["model"]["arch"] == "dcgan"
    manifest = json.loads((theirs / "manifest.json").read_text())["files"]
    assert record["sha256"]["G.safetensors"] == manifest["G.safetensors"]["sha256"]
    assert "# fine-tuned from" in (new / "config.yaml").read_text()
    assert json.loads((new / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 2


def test_init_from_an_export_keeps_g_and_starts_d_fresh(tmp_path, source, capsys):
    export = export_run(source, tmp_path / "export")
    new = tmp_path / "new"
    args = ["--config", str(source / "config.yaml")]  # an export holds no training config
    assert _train("--init-from", str(export), "--out", str(new), *args,
                  "train.ema_bn_samples=0", "train.kimg=0.016") == 0  # fmt: skip
    assert "is an export, which holds G_ema only: G and G_ema start from it, D starts fresh" in (
        capsys.readouterr().err
    )
    start, model = new / "checkpoint" / STEP0, load_file(str(export / "model.safetensors"))
    for name in ("G", "G_ema"):
        weights = _weights(start, name)
        assert all(torch.equal(weights[k], model[k]) for k in model), name
    cfg = resolve(config_file=new / "config.yaml")
    fresh = build_run(cfg, resolve_data(cfg.data)).D.state_dict()  # seeded as the run's own
    weights = _weights(start, "D")
    assert all(torch.equal(weights[k], fresh[k]) for k in fresh)
    record = json.loads((new / "init_from.json").read_text())
    assert record["kind"] == "export" and list(record["sha256"]) == ["model.safetensors"]


def test_a_shape_mismatch_names_the_tensor_and_leaves_nothing(tmp_path, source, capsys):
    out = tmp_path / "new"
    assert _train("--init-from", str(source), "--out", str(out), "model.g_channels=16") == 2
    _one_line_error(capsys, "G tensor 'fc.weight' is [784, 8] in the source and [1568, 8] here")
    assert not out.exists()


def test_another_class_count_reinitialises_class_embeddings(tmp_path, source, data, capsys):
    new = tmp_path / "new"
    assert _train("--init-from", str(source), "--data", str(data["two"]), "--out", str(new),
                  "train.ema_bn_samples=0", "train.kimg=0.016") == 0  # fmt: skip
    note = "class embeddings re-initialised for 2 classes (the source has 3): 4 in G, 1 in D, 4 in"
    assert note in capsys.readouterr().err
    cfg = resolve(config_file=new / "config.yaml")
    run = build_run(cfg, resolve_data(cfg.data))  # what the run's seed initialises
    start, theirs = new / "checkpoint" / STEP0, find_checkpoint(source)
    for name, module in run.networks().items():
        fresh, mine, old = module.state_dict(), _weights(start, name), _weights(theirs, name)
        for key in fresh:
            embedding = "embed" in key or "class_" in key
            assert torch.equal(mine[key], fresh[key] if embedding else old[key]), (name, key)
        assert any("embed" in k or "class_" in k for k in fresh)


def test_freeze_d_keeps_the_first_blocks_fixed(tmp_path, source):
    new = tmp_path / "new"
    assert _train("--init-from", str(source), "--out", str(new), "train.freeze_d=1",
                  "train.kimg=0.048") == 0  # fmt: skip
    cfg = resolve(config_file=new / "config.yaml")
    D = build_run(cfg, resolve_data(cfg.data)).D
    frozen = {id(p) for p in d_blocks(D)[0].parameters()}
    names = {n: id(p) in frozen for n, p in D.named_parameters()}
    before, after = _weights(find_checkpoint(source), "D"), _weights(find_checkpoint(new), "D")
    assert sum(names.values()) == 2  # conv 0: weight and bias
    for name, is_frozen in names.items():
        assert torch.equal(before[name], after[name]) == is_frozen, name


def test_frozen_blocks_leave_ds_optimizer(data):
    overrides = [f"data.name={data['three']}", *TINY, "train.freeze_d=2"]
    cfg = resolve("mnist-dcgan", overrides=overrides)
    run = build_run(cfg, resolve_data(cfg.data))
    in_opt = {id(p) for group in run.opt_D.param_groups for p in group["params"]}
    frozen = {id(p) for block in d_blocks(run.D)[:2] for p in block.parameters()}
    assert frozen and not frozen & in_opt
    assert in_opt == {id(p) for p in run.D.parameters()} - frozen
    assert not any(p.requires_grad for block in d_blocks(run.D)[:2] for p in block.parameters())


@pytest.mark.parametrize(
    "arch, overrides, count, first",
    [
        ("dcgan", ["data.resolution=28"], 2, ["features.0."]),
        ("dcgan", ["data.resolution=64"], 4, ["features.0."]),
        ("resnet", ["data.resolution=32"], 3, ["blocks.0."]),
        ("biggan", ["data.resolution=32", "model.attention_res=16"], 3,
         ["blocks.0.", "attention."]),
        ("mlp", ["model.d_depth=2", "model.d_fourier=4"], 2, ["net.0.", "fourier_net.0."]),
    ],
)  # fmt: skip
def test_d_blocks_for_each_family(arch, overrides, count, first):
    images = arch != "mlp"
    preset = "mnist-dcgan" if images else "ring"
    cfg = resolve(preset, overrides=[f"model.arch={arch}", "model.d_channels=4", *overrides])
    shape = (1, cfg.data.resolution, cfg.data.resolution) if images else (2,)
    _, D, _ = build_networks(cfg.model, shape, 3 if images else 0)
    blocks = d_blocks(D)
    assert len(blocks) == count
    names = {id(p): n for n, p in D.named_parameters()}
    in_blocks = [[names[id(p)] for p in block.parameters()] for block in blocks]
    assert all(any(n.startswith(f) for n in in_blocks[0]) for f in first)  # from the input
    assert all(any(n.startswith(f) for f in first) for n in in_blocks[0])
    flat = [n for block in in_blocks for n in block]
    assert len(flat) == len(set(flat))  # disjoint
    assert not any(n.startswith(("fc.", "embed.")) for n in flat)  # heads are not blocks


def test_freeze_d_beyond_the_block_count_is_refused(tmp_path, source, capsys):
    out = tmp_path / "new"
    assert _train("--init-from", str(source), "--out", str(out), "train.freeze_d=3") == 2
    _one_line_error(capsys, "train.freeze_d=3 but this D (DCGANDiscriminator) has 2 blocks")
    assert not out.exists()


def test_bad_sources_are_refused_and_nothing_is_written(tmp_path, source, capsys):
    out = tmp_path / "new"
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("hello")
    (tmp_path / "model.pt").write_bytes(b"\x80\x04K\x01.")  # a pickle: never opened
    corrupt = tmp_path / "corrupt"
    shutil.copytree(source, corrupt)
    weights = find_checkpoint(corrupt) / "G.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1
    weights.write_bytes(bytes(raw))
    cases = [
        (["--init-from", str(tmp_path / "folder")], "is neither a run folder"),
        (["--init-from", str(tmp_path / "missing")], "not found"),
        (["--init-from", str(tmp_path / "model.pt")], "pickle-style file, which minmax never"),
        (["--init-from", str(corrupt)], "does not match its SHA-256"),
        (["--init-from", str(source), "--resume", str(source)], "give one of them"),
    ]
    for args, fragment in cases:
        assert _train(*args, "--out", str(out)) == 2, args
        _one_line_error(capsys, fragment)
        assert not out.exists()


def test_resume_of_a_fine_tuned_run_is_exact_and_never_reads_the_source(tmp_path, source):
    copy = tmp_path / "source"
    shutil.copytree(source, copy)
    straight, pieces = tmp_path / "straight", tmp_path / "pieces"
    assert _train("--init-from", str(copy), "--out", str(straight), "train.kimg=0.064") == 0
    assert _train("--init-from", str(copy), "--out", str(pieces), "train.kimg=0.032") == 0
    shutil.rmtree(copy)  # a resume must not need it
    assert _train("--resume", str(pieces), "train.kimg=0.064") == 0
    for name in NETWORKS:
        a = _weights(find_checkpoint(straight), name)
        b = _weights(find_checkpoint(pieces), name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert "# fine-tuned from" in (pieces / "config.yaml").read_text()  # the header survives
    assert json.loads((pieces / "init_from.json").read_text())["kind"] == "run"
