import pytest
import torch
from torch import nn

from minmax.errors import UsageError
from minmax.train.checkpoint import (
    find_checkpoint,
    load_module,
    load_training,
    read_spec,
    save_checkpoint,
)


def _setup(seed: int):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(5, 3)).sum().backward()
    opt.step()
    return net, opt


def test_round_trip_restores_modules_optimizers_and_rng(tmp_path):
    net, opt = _setup(0)
    rng = torch.Generator().manual_seed(5)
    torch.randn(3, generator=rng)
    save_checkpoint(
        tmp_path, {"G": net}, {"arch": "x"}, {"G": opt}, {"loop": rng.get_state()}, {"step": 7}
    )
    folder = find_checkpoint(tmp_path)
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


def test_a_second_save_replaces_the_first_and_leaves_no_temporaries(tmp_path):
    net, opt = _setup(0)
    for step in (1, 2):
        save_checkpoint(tmp_path, {"G": net}, {}, {"G": opt}, {}, {"step": step})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    state, _ = load_training(find_checkpoint(tmp_path), {"G": opt})
    assert state["step"] == 2


def test_an_interrupted_swap_falls_back_to_the_old_checkpoint(tmp_path):
    net, opt = _setup(0)
    save_checkpoint(tmp_path, {"G": net}, {}, {"G": opt}, {}, {"step": 1})
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.old")  # crash mid-swap
    (tmp_path / "checkpoint.tmp").mkdir()  # a half-written new one, never used
    assert find_checkpoint(tmp_path).name == "checkpoint.old"


def test_missing_or_mismatched_checkpoints_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no checkpoint"):
        find_checkpoint(tmp_path)
    net, opt = _setup(0)
    save_checkpoint(tmp_path, {"G": net}, {}, {"G": opt}, {}, {"step": 1})
    other = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    with pytest.raises(UsageError, match="does not match"):
        load_module(find_checkpoint(tmp_path), "G", other)
    with pytest.raises(UsageError, match="cannot read"):
        load_module(find_checkpoint(tmp_path), "D", net)
