import pytest
from django.core.exceptions import ImproperlyConfigured

from mmm.env import env_bool, env_float, env_int, env_list, env_str


@pytest.mark.parametrize("raw, value", [("true", True), ("1", True), ("On", True), ("no", False), ("0", False)])
def test_booleans_are_read(monkeypatch, raw, value):
    monkeypatch.setenv("X_FLAG", raw)
    assert env_bool("X_FLAG", not value) is value


def test_a_value_that_is_not_understood_fails_loudly(monkeypatch):
    monkeypatch.setenv("X_FLAG", "ture")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG='ture' is not a boolean"):
        env_bool("X_FLAG", False)
    monkeypatch.setenv("X_NUM", "5s")
    with pytest.raises(ImproperlyConfigured, match="not a number"):
        env_float("X_NUM", 1.0)
    with pytest.raises(ImproperlyConfigured, match="not a whole number"):
        env_int("X_NUM", 1)


def test_ranges_are_checked(monkeypatch):
    monkeypatch.setenv("X_NUM", "0")
    with pytest.raises(ImproperlyConfigured, match="below the minimum 1"):
        env_int("X_NUM", 5, minimum=1)
    monkeypatch.setenv("X_NUM", "inf")
    with pytest.raises(ImproperlyConfigured, match="finite"):
        env_float("X_NUM", 1.0)


def test_unset_and_blank_values_take_the_default(monkeypatch):
    monkeypatch.delenv("X_UNSET", raising=False)
    monkeypatch.setenv("X_BLANK", "  ")
    assert env_int("X_UNSET", 7) == 7
    assert env_str("X_BLANK", "d") == "d"
    assert env_list("X_BLANK", ["a"]) == ["a"]


def test_lists_are_comma_separated(monkeypatch):
    monkeypatch.setenv("X_LIST", "a.example, b.example,,")
    assert env_list("X_LIST", []) == ["a.example", "b.example"]
