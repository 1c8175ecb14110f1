"""mmm.gunicorn_worker's _SettledConfig: a worker's gunicorn settings read as Config reads them,
as plain attributes once read, and read again once set."""

import pytest
from gunicorn.config import Config

from mmm.gunicorn_worker import _SettledConfig
from tests.python_calls import python_calls_during


def settled() -> Config:
    cfg = Config()
    cfg.set("keepalive", 7)
    cfg.__class__ = _SettledConfig  # as GeventWorker.init_process does in the worker
    return cfg


def python_calls_while_reading(cfg: Config, name: str) -> list[str]:
    return python_calls_during(lambda: getattr(cfg, name))


def test_every_setting_and_property_reads_as_configs_does():
    plain, cfg = Config(), settled()
    plain.set("keepalive", 7)
    for name in sorted(plain.settings):
        assert getattr(cfg, name) == getattr(plain, name), name
        assert getattr(cfg, name) == getattr(plain, name), name  # the second, settled read
    for name in ("is_ssl", "worker_class_str", "address", "uid", "gid", "proc_name", "env", "sendfile", "reuse_port"):
        assert getattr(cfg, name) == getattr(plain, name), name


def test_a_setting_read_once_is_read_without_a_python_call():
    cfg = settled()
    assert "Config.__getattr__" in python_calls_while_reading(cfg, "limit_request_line")
    assert python_calls_while_reading(cfg, "limit_request_line") == []


def test_a_setting_set_after_it_was_read_is_read_again():
    cfg = settled()
    assert cfg.keepalive == 7
    cfg.set("keepalive", 3)
    assert cfg.keepalive == 3


def test_unknown_settings_and_writes_are_refused_as_by_config():
    cfg = settled()
    with pytest.raises(AttributeError):
        cfg.no_such_setting  # noqa: B018
    with pytest.raises(AttributeError):
        cfg.keepalive = 1  # Config's "Invalid access!"
