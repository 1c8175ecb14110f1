"""mmm.settings_reads: with it installed, a setting already read is a plain attribute (no Python
call to read it), and everything that reads or changes settings sees what it saw before."""

import pytest
from django.conf import LazySettings, settings
from django.test import override_settings

from mmm import settings_reads
from tests.python_calls import python_calls_during


@pytest.fixture
def installed():
    assert settings_reads.install()
    try:
        yield
    finally:
        settings_reads.uninstall()
    assert type(settings) is LazySettings


def python_calls_while_reading(name: str) -> list[str]:
    """The Python functions called while ``settings.<name>`` is read once more."""
    getattr(settings, name)  # cached from here on
    return python_calls_during(lambda: getattr(settings, name))


def test_djangos_lazy_settings_read_each_setting_in_python():
    # What the module is for; if Django stops doing this, the module can go.
    assert "LazyObject.__getattribute__" in python_calls_while_reading("DEBUG")


def test_a_setting_already_read_is_read_without_a_python_call(installed):
    assert python_calls_while_reading("DEBUG") == []
    assert python_calls_while_reading("MMM_CONNECT_TIMEOUT") == []


def test_only_the_lazy_object_changes_class():
    wrapped = type(settings._wrapped)  # (a test process's are pytest-django's UserSettingsHolder)
    assert settings_reads.install()
    try:
        assert type(settings) is not LazySettings and isinstance(settings, LazySettings)
        # The wrapped settings keep theirs, and the lazy object still passes for them.
        assert type(settings._wrapped) is wrapped
        assert settings.__class__ is wrapped and isinstance(settings, wrapped)
    finally:
        settings_reads.uninstall()


def test_overridden_settings_are_read_and_then_restored(installed):
    before = settings.MMM_CONNECT_TIMEOUT
    with override_settings(MMM_CONNECT_TIMEOUT=before + 7, MMM_NOT_A_SETTING="x"):
        overridden = settings.MMM_CONNECT_TIMEOUT
        assert overridden == before + 7
        assert settings.MMM_NOT_A_SETTING == "x"
    restored = settings.MMM_CONNECT_TIMEOUT
    assert restored == before
    assert not hasattr(settings, "MMM_NOT_A_SETTING")


def test_the_settings_fixture_is_read_as_it_changes(installed, settings):
    settings.MMM_REQUIRE_AUTH = True
    from django.conf import settings as django_settings

    assert django_settings.MMM_REQUIRE_AUTH is True
    settings.MMM_REQUIRE_AUTH = False
    assert django_settings.MMM_REQUIRE_AUTH is False
    del settings.MMM_REQUIRE_AUTH
    with pytest.raises(AttributeError):
        django_settings.MMM_REQUIRE_AUTH  # noqa: B018


def test_an_unknown_setting_is_still_an_attribute_error(installed):
    with pytest.raises(AttributeError):
        settings.MMM_NO_SUCH_SETTING  # noqa: B018


def test_djangos_checks_on_a_first_read_still_run(installed):
    # LazySettings.__getattr__ refuses an empty SECRET_KEY when it is read.
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(SECRET_KEY=""), pytest.raises(ImproperlyConfigured):
        settings.SECRET_KEY  # noqa: B018


def test_installing_twice_is_installing_once(installed):
    assert settings_reads.install()
    settings_reads.uninstall()
    assert type(settings) is LazySettings


def test_settings_that_are_not_djangos_lazy_settings_are_left_alone(monkeypatch):
    class Wrapped(LazySettings):
        pass

    other = Wrapped()
    monkeypatch.setattr(settings_reads, "settings", other)
    assert settings_reads.install() is False
    assert type(other) is Wrapped
