import os

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from accounts.keys import key_cache
from console.request_log import request_log_writer
from inference.routing import routing_table
from inference.routing_state import routing_state
from mmm import database
from mmm.breaker import redis_breaker
from tests.fake_upstream import FakeUpstream

REQUIRE_SERVICES = os.environ.get("MMM_REQUIRE_SERVICES") == "1"
REQUIRE_BROWSER = os.environ.get("MMM_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("MMM_CHROMIUM", "/usr/bin/chromium")


def pytest_collection_modifyitems(config, items):
    """Skip tests whose service is not configured, unless CI demands the services."""
    have = {
        "postgres": settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
        "redis": bool(settings.REDIS_URL),
    }
    for item in items:
        for marker, available in have.items():
            if marker in item.keywords and not available:
                if REQUIRE_SERVICES:
                    raise pytest.UsageError(f"MMM_REQUIRE_SERVICES=1 but {marker} is not configured for {item.nodeid}")
                item.add_marker(pytest.mark.skip(reason=f"needs {marker}: set its URL to run"))
        if "browser" in item.keywords and not os.access(CHROMIUM, os.X_OK):
            if REQUIRE_BROWSER:
                raise pytest.UsageError(
                    f"MMM_REQUIRE_BROWSER=1 but {CHROMIUM} is not installed (apt-get install chromium)"
                )
            item.add_marker(pytest.mark.skip(reason=f"needs {CHROMIUM}: apt-get install chromium"))


@pytest.fixture(autouse=True)
def fresh_routing_state():
    """Each test starts with an empty routing table and no traffic history, as a new gateway would."""
    routing_table.invalidate()
    routing_state().reset()
    key_cache.clear()
    database.breaker.reset()
    redis_breaker.reset()


@pytest.fixture(autouse=True)
def fresh_usage_state(settings):
    """Budgets and prices as the test's database has them, on counters of the test's own."""
    import uuid

    from usage.budget_store import reset_budget_store
    from usage.catalog import catalog
    from usage.ledger import ledger_writer

    settings.MMM_USAGE_PREFIX = f"mmm:test-usage:{uuid.uuid4().hex[:12]}"
    catalog.invalidate()
    reset_budget_store()
    yield
    ledger_writer.discard()
    reset_budget_store()


@pytest.fixture(autouse=True)
def auth_not_required(settings):
    """The seed's contract is tested without keys, as `make serve` runs; tests of access
    control ask for ``require_auth``. A key that is sent counts either way."""
    settings.MMM_REQUIRE_AUTH = False


@pytest.fixture
def require_auth(auth_not_required, settings):
    settings.MMM_REQUIRE_AUTH = True


@pytest.fixture
def make_key(db):
    """make_key(scopes, **fields) -> the key, ready for an Authorization header."""
    from accounts.services import api_key_create

    def make(*scopes: str, name: str = "test key", **fields) -> str:
        return api_key_create(name=name, scopes=list(scopes), **fields)[1]

    return make


def bearer(key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


@pytest.fixture(autouse=True)
def request_log_in_foreground(settings):
    """Request-log rows wait in the queue until a test flushes them, in the test's own thread
    (and so inside its transaction); none is carried over to the next test. Usage is settled
    in the request, so a test reads the counters as soon as its request is answered."""
    settings.MMM_REQUEST_LOG_BACKGROUND = False
    settings.MMM_USAGE_SETTLE_BEHIND = False
    yield
    request_log_writer.discard()


@pytest.fixture
def upstream():
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def api():
    return APIClient()


SEED_ANSWER = {"data": {"items": [{"attributes": {"answer": "I am a fake model."}}]}}


def seed_registration(url: str, **overrides) -> dict:
    """The seed document's registration example, pointed at ``url``."""
    return {
        "model_name": "proxyllm",
        "body": {"input": "{USER_PROMPT}", "model_name": "{MODEL_NAME}"},
        "req_url_template": url,
        "owner": "xuyuan23",
        "response_extract": "data.items[].attributes.answer",
        **overrides,
    }


@pytest.fixture
def tcp_proxy():
    """tcp_proxy(host, port) -> a TcpProxy in front of that service, stopped after the test."""
    from tests.tcp_proxy import TcpProxy

    proxies = []

    def make(host: str, port: int) -> TcpProxy:
        proxies.append(TcpProxy(target_host=host, target_port=port).start())
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.stop()
