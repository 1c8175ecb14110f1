"""Per-key requests per minute: refused with 429 and Retry-After before any upstream call,
and exact across gateway processes that share Redis."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.conf import settings

from tests.conftest import SEED_ANSWER, bearer, seed_registration
from tests.gateway_process import GatewayProcess, gateway_database

ASK = {"model_name": "proxyllm", "input": "hi"}


@pytest.mark.django_db
def test_the_request_over_the_limit_gets_429_with_retry_after_and_never_reaches_the_upstream(
    api, make_key, upstream, require_auth
):
    url = upstream.on("/gen", json=SEED_ANSWER)
    api.post("/api/server/register", seed_registration(url), format="json", **bearer(make_key("admin")))
    key = make_key("inference", rate_limit_per_minute=3)

    statuses = [api.post("/api/v1/chat/completions", ASK, format="json", **bearer(key)) for _ in range(5)]

    assert [response.status_code for response in statuses] == [200, 200, 200, 429, 429]
    refused = statuses[-1]
    assert refused.json()["success"] is False and refused.json()["code"] == "throttled"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert len(upstream.hits("/gen")) == 3


@pytest.mark.django_db
def test_each_key_has_its_own_count(api, make_key, upstream):
    url = upstream.on("/gen", json=SEED_ANSWER)
    api.post("/api/server/register", seed_registration(url), format="json")
    first, second = make_key("inference", rate_limit_per_minute=1), make_key("inference", rate_limit_per_minute=1)

    assert api.post("/api/v1/chat/completions", ASK, format="json", **bearer(first)).status_code == 200
    assert api.post("/api/v1/chat/completions", ASK, format="json", **bearer(first)).status_code == 429
    assert api.post("/api/v1/chat/completions", ASK, format="json", **bearer(second)).status_code == 200


@pytest.mark.redis
@pytest.mark.e2e
def test_the_limit_is_exact_across_two_gateway_processes_sharing_redis(tmp_path, upstream):
    url = upstream.on("/gen", json=SEED_ANSWER)
    with gateway_database(tmp_path) as env:
        env = {
            **env,
            "MMM_REQUIRE_AUTH": "true",
            "REDIS_URL": settings.REDIS_URL,
            "MMM_CACHE_PREFIX": f"test-{uuid.uuid4().hex[:8]}",
            "MMM_WEB_WORKERS": "2",
        }
        setup = GatewayProcess(env=env)
        setup.manage("migrate", "--noinput", "-v0").check_returncode()
        admin_key = setup.manage("create_api_key", "--name", "ops", "--scope", "admin").stdout.splitlines()[-1]
        key = setup.manage(
            "create_api_key", "--name", "app", "--scope", "inference", "--rpm", "10"
        ).stdout.splitlines()[-1]
        gateways = [GatewayProcess(env=env).start(), GatewayProcess(env=env).start()]
        try:
            registered = requests.post(
                gateways[0].url + "/api/server/register",
                json=seed_registration(url),
                headers={"Authorization": f"Bearer {admin_key}"},
                timeout=30,
            )
            assert registered.status_code == 200, registered.text

            def ask(index: int) -> int:
                gateway = gateways[index % 2]
                return requests.post(
                    gateway.url + "/api/v1/chat/completions",
                    json=ASK,
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=30,
                ).status_code

            with ThreadPoolExecutor(30) as pool:
                statuses = list(pool.map(ask, range(30)))
        finally:
            for gateway in gateways:
                gateway.stop()

    assert sorted(statuses) == [200] * 10 + [429] * 20
    assert len(upstream.hits("/gen")) == 10
