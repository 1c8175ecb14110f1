"""API keys while the database cannot be reached (in one process; tests/test_outage.py does it
through gunicorn and a TCP proxy): a key seen before keeps its last good entry, an unseen key is
a 503 that names the key store, a revocation still counts whenever the database answers, and
after a failure the database is not asked again for the breaker's interval."""

import pytest
from django.db import OperationalError

from accounts.keys import KeyCache, KeyStoreUnavailable
from accounts.models import ApiKey
from mmm import database
from tests.conftest import bearer

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def database_away(monkeypatch):
    """Switch: while on, every ApiKey query fails as an unreachable PostgreSQL does."""
    state = {"away": False, "queries": 0}
    real_filter = ApiKey.objects.filter

    def filter_(*args, **kwargs):
        state["queries"] += 1
        if state["away"]:
            raise OperationalError("connection to server failed: Connection refused")
        return real_filter(*args, **kwargs)

    monkeypatch.setattr(ApiKey.objects, "filter", filter_)
    return state


def test_a_key_seen_before_keeps_working_on_its_last_entry_until_the_stale_limit(make_key, database_away, settings):
    settings.MMM_API_KEY_CACHE_SECONDS = 2
    settings.MMM_API_KEY_STALE_SECONDS = 3600
    clock = Clock()
    cache = KeyCache(clock=clock)
    key = make_key("inference")
    assert cache.caller_for(key) is not None

    database_away["away"] = True
    clock.now += 60
    assert cache.caller_for(key).api_key_prefix == key.split("_")[1]
    clock.now += 3600
    database.breaker.reset()
    with pytest.raises(KeyStoreUnavailable):
        cache.caller_for(key)


def test_an_unseen_key_while_the_database_is_away_is_a_503_naming_the_key_store(
    api, make_key, database_away, require_auth
):
    key = make_key("inference")
    database_away["away"] = True

    response = api.post(
        "/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json", **bearer(key)
    )

    assert response.status_code == 503
    assert response.json()["code"] == "key_store_unavailable"


def test_a_revocation_counts_within_the_cache_time_whenever_the_database_answers(make_key, database_away, settings):
    settings.MMM_API_KEY_CACHE_SECONDS = 2
    clock = Clock()
    cache = KeyCache(clock=clock)
    key = make_key("inference")
    assert cache.caller_for(key) is not None

    ApiKey.objects.update(revoked=True)
    clock.now += 1
    assert cache.caller_for(key) is not None  # still within the cache time
    clock.now += 1
    assert cache.caller_for(key) is None


def test_after_a_failure_the_database_is_not_asked_again_until_the_breaker_interval_ends(make_key, database_away):
    clock = Clock()
    cache = KeyCache(clock=clock)
    first, second = make_key("inference"), make_key("inference")
    database_away["away"] = True

    with pytest.raises(KeyStoreUnavailable):
        cache.caller_for(first)
    asked = database_away["queries"]
    with pytest.raises(KeyStoreUnavailable):
        cache.caller_for(second)
    assert database_away["queries"] == asked  # refused at once: the breaker is open
    assert database.breaker.is_open()
