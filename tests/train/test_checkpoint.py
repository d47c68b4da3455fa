import json

import pytest
import torch
from torch import nn

from minmax.errors import UsageError
from minmax.train.checkpoint import (
    best_checkpoint,
    find_checkpoint,
    load_module,
    load_training,
    read_spec,
    save_checkpoint,
    verify_checkpoint,
)


def _setup(seed: int):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(5, 3)).sum().backward()
    opt.step()
    return net, opt


def _save(run_dir, net, opt, images_seen: int, **kwargs):
    state = {"step": images_seen // 64, "images_seen": images_seen}
    return save_checkpoint(run_dir, {"G": net}, {}, {"G": opt}, {}, state, **kwargs)


def _names(run_dir):
    return sorted(p.name for p in (run_dir / "checkpoint").iterdir())


def test_round_trip_restores_modules_optimizers_and_rng(tmp_path):
    net, opt = _setup(0)
    rng = torch.Generator().manual_seed(5)
    torch.randn(3, generator=rng)
    state = {"step": 7, "images_seen": 448}
    save_checkpoint(
        tmp_path, {"G": net}, {"arch": "x"}, {"G": opt}, {"loop": rng.get_state()}, state
    )
    folder = find_checkpoint(tmp_path)
    assert folder == tmp_path / "checkpoint" / "ckpt-000000000448"
    assert read_spec(folder) == {"arch": "x"}
    net2, opt2 = _setup(1)
    load_module(folder, "G", net2)
    state, rngs = load_training(folder, {"G": opt2})
    assert state["step"] == 7
    for a, b in zip(net.parameters(), net2.parameters(), strict=True):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for index in s1["state"]:
        for key, value in s1["state"][index].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(s2["state"][index][key]))
    assert s1["param_groups"] == s2["param_groups"]
    rng2 = torch.Generator()
    rng2.set_state(rngs["loop"])
    assert torch.equal(torch.randn(4, generator=rng), torch.randn(4, generator=rng2))


def test_the_manifest_lists_every_file_with_its_size_and_sha256(tmp_path):
    net, opt = _setup(0)
    folder = _save(tmp_path, net, opt, 64)
    files = json.loads((folder / "manifest.json").read_text())["files"]
    assert set(files) == {p.name for p in folder.iterdir()} - {"manifest.json"}
    assert files["G.safetensors"]["bytes"] == (folder / "G.safetensors").stat().st_size
    assert len(files["G.safetensors"]["sha256"]) == 64
    assert verify_checkpoint(folder) is None


def test_the_newest_keep_checkpoints_are_kept_and_the_best_one(tmp_path):
    net, opt = _setup(0)
    scores = {64: 5.0, 128: 1.0, 192: 3.0, 256: float("nan"), 320: None, 384: 2.0}
    for images_seen, score in scores.items():
        _save(tmp_path, net, opt, images_seen, keep=2, score=score)
    assert _names(tmp_path) == [
        "best.json",
        "ckpt-000000000128",  # the best (lowest score; NaN never counts)
        "ckpt-000000000320",
        "ckpt-000000000384",
    ]
    assert best_checkpoint(tmp_path).name == "ckpt-000000000128"
    assert find_checkpoint(tmp_path).name == "ckpt-000000000384"
    assert best_checkpoint(tmp_path / "elsewhere") is None
    with pytest.raises(UsageError, match="keep_checkpoints"):
        _save(tmp_path, net, opt, 448, keep=0)


def test_saving_the_same_images_seen_again_replaces_it_and_leaves_no_temporaries(tmp_path):
    net, opt = _setup(0)
    for step in (1, 2):
        state = {"step": step, "images_seen": 64}
        save_checkpoint(tmp_path, {"G": net}, {}, {"G": opt}, {}, state)
    assert _names(tmp_path) == ["ckpt-000000000064"]
    state, _ = load_training(find_checkpoint(tmp_path), {"G": opt})
    assert state["step"] == 2


def test_a_swap_cut_short_falls_back_to_the_old_folder(tmp_path):
    net, opt = _setup(0)
    folder = _save(tmp_path, net, opt, 64)
    folder.rename(folder.with_name(folder.name + ".old"))  # killed between the two renames
    (folder.with_name(folder.name + ".tmp")).mkdir()
    assert find_checkpoint(tmp_path).name == "ckpt-000000000064.old"
    _save(tmp_path, net, opt, 128)  # the next save tidies both up
    assert _names(tmp_path) == ["ckpt-000000000064.old", "ckpt-000000000128"]
    _save(tmp_path, net, opt, 128)
    _save(tmp_path, net, opt, 192, keep=1)
    assert _names(tmp_path) == ["ckpt-000000000192"]


def test_runs_in_the_previous_layout_are_still_read(tmp_path):
    net, opt = _setup(0)
    legacy = tmp_path / "checkpoint"
    _save(tmp_path, net, opt, 64).rename(tmp_path / "moved")
    legacy.rmdir()
    (tmp_path / "moved").rename(legacy)  # RUN_DIR/checkpoint/{state.json, ...}
    (legacy / "manifest.json").unlink()
    assert find_checkpoint(tmp_path) == legacy
    _save(tmp_path, net, opt, 128)  # a resumed old run: new checkpoints go beside the old
    assert find_checkpoint(tmp_path).name == "ckpt-000000000128"


def test_the_checkpoint_folder_itself_can_be_given(tmp_path):
    net, opt = _setup(0)
    _save(tmp_path, net, opt, 64)
    assert find_checkpoint(tmp_path / "checkpoint").name == "ckpt-000000000064"


def test_missing_or_mismatched_checkpoints_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no checkpoint"):
        find_checkpoint(tmp_path)
    net, opt = _setup(0)
    _save(tmp_path, net, opt, 64)
    other = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    with pytest.raises(UsageError, match="does not match"):
        load_module(find_checkpoint(tmp_path), "G", other)
    with pytest.raises(UsageError, match="cannot read"):
        load_module(find_checkpoint(tmp_path), "D", net)
