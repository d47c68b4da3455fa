import pytest

from minmax.errors import UsageError
from minmax.registry import Registry, did_you_mean


def test_registry_get_and_suggestions():
    reg: Registry[int] = Registry("widget")
    reg.add("alpha", 1)
    reg.add("beta", 2)
    assert reg.get("alpha") == 1
    assert list(reg) == ["alpha", "beta"] and "beta" in reg
    with pytest.raises(UsageError, match="unknown widget 'alpah': did you mean 'alpha'"):
        reg.get("alpah")
    with pytest.raises(UsageError, match="choose from: alpha, beta"):
        reg.get("zzz")
    with pytest.raises(ValueError, match="twice"):
        reg.add("alpha", 3)


def test_did_you_mean_lists_all_when_nothing_is_close():
    assert did_you_mean("q", ["b", "a"]) == "choose from: a, b"
