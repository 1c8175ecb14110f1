"""The gateway as `make serve` runs it without Redis: its limits are exact, and idle client
connections do not starve real requests."""

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import SEED_ANSWER, seed_registration
from tests.gateway_process import GatewayProcess, gateway_database

pytestmark = pytest.mark.e2e

COMPLETIONS = "/api/v1/chat/completions"
ASK = {"model_name": "proxyllm", "input": "hi"}


@pytest.fixture
def default_gateway(tmp_path, upstream):
    """Keys required, no REDIS_URL, several processes (as `make serve` on a machine of 3 cores)."""
    with gateway_database(tmp_path) as env:
        env = {**env, "MMM_REQUIRE_AUTH": "true", "REDIS_URL": "", "MMM_WEB_WORKERS": "3"}
        setup = GatewayProcess(env=env)
        setup.manage("migrate", "--noinput", "-v0").check_returncode()
        admin_key = setup.create_api_key(scope="admin")
        gateway = GatewayProcess(env=env).start()
        gateway.headers = {"Authorization": f"Bearer {admin_key}"}
        gateway.post(
            "/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER))
        ).raise_for_status()
        yield gateway, setup
        gateway.stop()


def limited_key(setup: GatewayProcess, rpm: int) -> str:
    made = setup.manage("create_api_key", "--name", "app", "--scope", "inference", "--rpm", str(rpm))
    made.check_returncode()
    return made.stdout.strip().splitlines()[-1]


def test_a_5_a_minute_key_gets_exactly_5_of_20_concurrent_requests_every_time(default_gateway):
    gateway, setup = default_gateway

    for _ in range(3):
        key = limited_key(setup, 5)

        def ask(_, key=key):
            return requests.post(
                gateway.url + COMPLETIONS, json=ASK, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ).status_code

        with ThreadPoolExecutor(20) as pool:
            statuses = sorted(pool.map(ask, range(20)))
        assert statuses == [200] * 5 + [429] * 15


def test_2000_idle_sockets_do_not_keep_50_real_requests_from_being_served(default_gateway):
    gateway, setup = default_gateway
    key = setup.create_api_key(scope="inference")
    idle = []
    try:
        for _ in range(2000):
            idle.append(socket.create_connection(("127.0.0.1", gateway.port), timeout=10))

        def ask(_):
            return requests.post(
                gateway.url + COMPLETIONS, json=ASK, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ).status_code

        with ThreadPoolExecutor(50) as pool:
            statuses = list(pool.map(ask, range(50)))
    finally:
        for sock in idle:
            sock.close()
    assert statuses == [200] * 50
