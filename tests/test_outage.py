"""The gateway under gunicorn keeps serving while its own database or Redis is refused or
frozen, each reached through a TCP proxy the test controls (tests/tcp_proxy.py).

The windows are short (a few seconds each): the logic is the same as for longer ones, which
bench/outage.py runs (10 s + 10 s) and docs/resilience.md reports. No assertion here is on
timing beyond "no request waited for the whole outage" (a hang): latencies are in the bench.
"""

import os
import time
import uuid

import pytest
import requests

from tests.gateway_process import GatewayProcess, gateway_database
from tests.outage_load import SteadyLoad, complete, logged_rows, service_address, start_serving, summary, through
from tests.tcp_proxy import BLACKHOLE, FORWARD, REFUSE

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

WINDOW = 4.0  # seconds of each outage phase


def wait_for(what: str, condition, *, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"waited {seconds:g} s for {what}")


@pytest.fixture
def keyed_env(tmp_path):
    """A database of its own, migrated, and the environment of a gateway that requires keys."""
    with gateway_database(tmp_path) as env:
        env = {
            **env,
            "MMM_REQUIRE_AUTH": "true",
            "MMM_WEB_WORKERS": "2",
            "MMM_ROUTING_STATE_PREFIX": f"mmm:outage:{uuid.uuid4().hex[:8]}",
            "MMM_CACHE_PREFIX": f"mmm-outage-{uuid.uuid4().hex[:8]}",
        }
        GatewayProcess(env=env).manage("migrate", "--noinput", "-v0").check_returncode()
        yield env


def test_known_keys_and_models_are_served_while_the_database_is_refused_then_frozen(keyed_env, upstream, tcp_proxy):
    proxy = tcp_proxy(*service_address(keyed_env["DATABASE_URL"]))
    gateway_env = {**keyed_env, "DATABASE_URL": through(keyed_env["DATABASE_URL"], proxy)}
    gateway, key, admin_key = start_serving(keyed_env, upstream, gateway_env=gateway_env)
    unseen_key = GatewayProcess(env=keyed_env).create_api_key(scope="inference")
    try:
        with SteadyLoad(url=gateway.url, key=key) as load:
            # Every process has served the key and loaded the table once the load runs a while.
            wait_for("200 answers from the steady load", lambda: sum(s.status == 200 for s in load.samples) >= 40)

            load.phase = REFUSE
            proxy.set_mode(REFUSE)
            time.sleep(WINDOW / 2)
            refused_unseen = complete(gateway, unseen_key)
            time.sleep(WINDOW / 2)

            load.phase = BLACKHOLE
            proxy.set_mode(BLACKHOLE)
            time.sleep(WINDOW / 2)
            frozen_unseen = complete(gateway, unseen_key)
            time.sleep(WINDOW / 2)

            load.phase = "back"
            proxy.set_mode(FORWARD)
            back_at = time.monotonic()
            # A key never seen before needs the database: it is what shows the gateway is back.
            wait_for(
                "the unseen key to be served after the database came back",
                lambda: complete(gateway, unseen_key).status_code == 200,
            )
            time.sleep(1.0)
        recovered_after = time.monotonic() - back_at
        metrics_text = requests.get(gateway.url + "/metrics", timeout=10).text
    finally:
        gateway.stop()  # a clean stop writes what is still queued
    # Every request sent across the outage was queued and written once the database was back
    # (the steady load, the two unseen-key refusals and the recovery probes, at least).
    logged = logged_rows(keyed_env["DATABASE_URL"])
    assert logged["all"] >= len(load.samples) + 2, (logged, len(load.samples))
    assert logged["key_store_unavailable"] >= 2, logged
    assert 'code="key_store_unavailable"' in metrics_text and 'status="503"' in metrics_text

    outage = load.in_phase(REFUSE) + load.in_phase(BLACKHOLE)
    stats = summary(outage)
    assert stats["requests"] > 20, stats
    assert stats["served_fraction"] >= 0.99, stats
    # No request waited on the frozen database for the whole window.
    assert stats["worst_seconds"] < WINDOW, stats
    for answer in (refused_unseen, frozen_unseen):
        assert answer.status_code == 503
        assert answer.json()["code"] == "key_store_unavailable"
    after = list(load.in_phase("back"))
    assert after and all(s.status == 200 for s in after), summary(after)
    assert recovered_after < 20


@pytest.mark.redis
def test_completions_go_on_and_limited_keys_get_503_while_redis_is_refused_then_frozen(keyed_env, upstream, tcp_proxy):
    proxy = tcp_proxy(*service_address(os.environ["REDIS_URL"]))
    gateway_env = {**keyed_env, "REDIS_URL": through(os.environ["REDIS_URL"], proxy)}
    gateway, key, _ = start_serving(keyed_env, upstream, gateway_env=gateway_env)
    limited = GatewayProcess(env=keyed_env)
    made = limited.manage("create_api_key", "--name", "limited", "--scope", "inference", "--rpm", "1000")
    made.check_returncode()
    limited_key = made.stdout.strip().splitlines()[-1]
    assert complete(gateway, limited_key).status_code == 200
    limited_answers = {}
    try:
        with SteadyLoad(url=gateway.url, key=key) as load:
            wait_for("200 answers from the steady load", lambda: sum(s.status == 200 for s in load.samples) >= 40)
            for mode in (REFUSE, BLACKHOLE):
                load.phase = mode
                proxy.set_mode(mode)
                time.sleep(WINDOW / 2)
                started = time.monotonic()
                answer = complete(gateway, limited_key)
                limited_answers[mode] = (answer.status_code, answer.json().get("code"), time.monotonic() - started)
                time.sleep(WINDOW / 2)
            load.phase = "back"
            proxy.set_mode(FORWARD)
            wait_for(
                "the limited key to be served after Redis came back",
                lambda: complete(gateway, limited_key).status_code == 200,
            )
    finally:
        gateway.stop()

    outage = load.in_phase(REFUSE) + load.in_phase(BLACKHOLE)
    stats = summary(outage)
    assert stats["requests"] > 20, stats
    assert stats["served_fraction"] >= 0.99, stats
    assert stats["worst_seconds"] < WINDOW, stats
    for mode, (status, code, seconds) in limited_answers.items():
        assert (status, code) == (503, "rate_limit_unavailable"), mode
        assert seconds < WINDOW, (mode, seconds)  # not a hang
