"""mmm.request_signals: the two receivers that replace Django's five in a gunicorn worker do
what Django's did (queries forgotten, obsolete connections closed, caches with a close of their
own closed, the URLconf reset), and leave anyone else's receivers alone."""

import time

import pytest
from django.core import signals
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections, connection
from django.test import override_settings
from django.urls import get_urlconf, set_urlconf

from mmm import request_signals

# Every send reaches the connections (close_old_connections): the database is there, outside a
# test transaction, as in a worker.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def closes(monkeypatch) -> list[str]:
    """Each close of the default connection (an in-memory SQLite database stays open when closed)."""
    calls: list[str] = []
    close = connection.close

    def counted():
        calls.append(connection.alias)
        close()

    monkeypatch.setattr(connection, "close", counted)
    return calls


@pytest.fixture
def installed():
    assert request_signals.install(), "Django's five receivers were not all connected"
    try:
        yield
    finally:
        request_signals.uninstall()
    for signal, receivers in request_signals.DJANGOS.items():
        assert all(request_signals._connected(signal, receiver) for receiver in receivers)


def test_install_swaps_djangos_receivers_for_two(installed):
    for signal, receivers in request_signals.DJANGOS.items():
        assert not any(request_signals._connected(signal, receiver) for receiver in receivers)
    assert request_signals._connected(signals.request_started, request_signals.started)
    assert request_signals._connected(signals.request_finished, request_signals.finished)


def test_another_receiver_keeps_djangos_in_place():
    # It may rely on running after Django's; the two would be connected after it.
    heard = []

    def operators_receiver(**kwargs):
        heard.append(kwargs.get("sender"))

    signals.request_finished.connect(operators_receiver)
    try:
        assert request_signals.install() is False
        assert all(
            request_signals._connected(signals.request_finished, r)
            for r in request_signals.DJANGOS[signals.request_finished]
        )
        assert not request_signals._connected(signals.request_finished, request_signals.finished)
        signals.request_finished.send(sender=WSGIHandler)
    finally:
        signals.request_finished.disconnect(operators_receiver)
    assert heard == [WSGIHandler]


def test_nothing_changes_when_one_of_djangos_is_disconnected():
    # As Django's test client leaves close_old_connections while it serves a request.
    signals.request_started.disconnect(close_old_connections)
    try:
        assert request_signals.install() is False
        assert not request_signals._connected(signals.request_started, request_signals.started)
        assert not request_signals._connected(signals.request_finished, request_signals.finished)
    finally:
        signals.request_started.connect(close_old_connections)


def test_start_forgets_the_queries_and_closes_an_obsolete_connection(installed, closes):
    connection.ensure_connection()
    connection.queries_log.append({"sql": "SELECT 1", "time": "0.000"})
    connection.close_at = time.monotonic() - 1  # past its CONN_MAX_AGE
    signals.request_started.send(sender=WSGIHandler, environ={})
    assert len(connection.queries_log) == 0
    assert closes == ["default"]


def test_finish_closes_an_obsolete_connection_and_keeps_a_live_one(installed, closes):
    connection.ensure_connection()
    connection.close_at = time.monotonic() + 60
    signals.request_finished.send(sender=WSGIHandler)
    assert closes == []
    connection.close_at = time.monotonic() - 1
    signals.request_finished.send(sender=WSGIHandler)
    assert closes == ["default"]


def test_finish_resets_the_urlconf(installed):
    set_urlconf("tests.some_urlconf")
    signals.request_finished.send(sender=WSGIHandler)
    assert get_urlconf() is None


class ClosingCache(LocMemCache):
    """A backend with a close() of its own, as a client-pooling backend might have."""

    closed = 0

    def close(self, **kwargs):
        ClosingCache.closed += 1


@override_settings(CACHES={"default": {"BACKEND": "tests.test_request_signals.ClosingCache", "LOCATION": "t"}})
def test_finish_closes_a_cache_whose_backend_closes():
    caches["default"].get("touch")  # closed only once used, as close_caches does
    ClosingCache.closed = 0
    assert request_signals.install()
    try:
        assert request_signals._closes_caches is True
        signals.request_finished.send(sender=WSGIHandler)
    finally:
        request_signals.uninstall()
    assert ClosingCache.closed == 1


def test_the_default_backends_close_nothing_so_their_loop_is_skipped(installed):
    # Django's local-memory cache (here) and Redis cache (with REDIS_URL) inherit BaseCache.close.
    assert request_signals._closes_caches is False
    assert request_signals._backend_closes("default") is False
    with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache"}}):
        assert request_signals._backend_closes("default") is False
