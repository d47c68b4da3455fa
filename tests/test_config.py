import re

import pytest

from minmax import config as C
from minmax.errors import UsageError


def test_every_preset_resolves_and_validates():
    names = C.preset_names()
    assert {"ring", "grid", "mixture1d"} <= set(names)
    for name in names:
        cfg = C.resolve(name)
        assert cfg.preset == name


def test_overrides_are_parsed_by_field_type():
    cfg = C.resolve(
        "ring",
        overrides=[
            "train.lr_d=1e-4",
            "train.batch_size=64",
            "model.z_dim=8.0",
            "data.name=grid",
            "train.max_minutes=2.5",
        ],
    )
    assert cfg.train.lr_d == 1e-4 and isinstance(cfg.train.lr_d, float)
    assert cfg.train.batch_size == 64 and isinstance(cfg.train.batch_size, int)
    assert cfg.model.z_dim == 8
    assert cfg.data.name == "grid"
    assert cfg.train.max_minutes == 2.5
    assert C.resolve(overrides=["train.max_minutes=none"]).train.max_minutes is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr_dd=1e-4", "did you mean 'lr_d'"),
        ("trian.lr_d=1e-4", "did you mean 'train'"),
        ("train.lr_d", "section.key=value"),
        ("=3", "section.key=value"),
        ("train.batch_size=abc", "'train.batch_size' must be int"),
        ("train.batch_size=2.5", "must be int"),
        ("train.lr_d=nan", "must be float"),
        ("train.lr_d=0", "must be a positive number"),
        ("train.lr_g=-1e-3", "must be a positive number"),
        ("train.batch_size=0", "must be a positive number"),
        ("train.kimg=inf", "must be a positive number"),
        ("train.beta1=1.0", "must be in [0, 1)"),
        ("train.max_minutes=0", "positive or none"),
        ("train=3", "is a section"),
        ("train.lr_d.x=3", "is a value, not a section"),
    ],
)
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        C.resolve("ring", overrides=[override])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.g_extra_convs=-1"], "'model.g_extra_convs' must be zero or positive"),
        (["model.arch=resnet", "model.g_extra_convs=1"], "g_extra_convs is for arch=dcgan"),
    ],
)
def test_g_extra_convs_out_of_range_or_for_another_family(overrides, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        C.resolve("mnist-dcgan", overrides=overrides)


def test_unknown_preset_suggests_the_closest():
    with pytest.raises(UsageError, match="did you mean 'ring'"):
        C.resolve("rign")


def test_config_file_round_trips_and_rejects_unknown_keys(tmp_path):
    cfg = C.resolve("grid", overrides=["train.seed=7"])
    path = tmp_path / "c.yaml"
    path.write_text(C.to_yaml(cfg))
    assert C.resolve(config_file=path) == cfg
    path.write_text("train:\n  lr: 0.1\n")
    with pytest.raises(UsageError, match="unknown config key 'train.lr'"):
        C.resolve(config_file=path)
    path.write_text('"tr\\nain": {}\n')  # a key with a line break: the error stays one line
    with pytest.raises(UsageError, match=r"unknown config key 'tr\\nain'"):
        C.resolve(config_file=path)
    path.write_text("train: [1, 2]\n")
    with pytest.raises(UsageError, match="is a section"):
        C.resolve(config_file=path)
    path.write_text("train: {batch_size: true}\n")
    with pytest.raises(UsageError, match="must be int"):
        C.resolve(config_file=path)
    path.write_text(": : :\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        C.resolve(config_file=path)
    with pytest.raises(UsageError, match="not found"):
        C.resolve(config_file=tmp_path / "missing.yaml")
    with pytest.raises(UsageError, match="either --preset or --config"):
        C.resolve("ring", path)


def test_bool_parsing():
    assert C._coerce("yes", bool, "x", from_text=True) is True
    assert C._coerce("0", bool, "x", from_text=True) is False
    with pytest.raises(UsageError):
        C._coerce("maybe", bool, "x", from_text=True)
