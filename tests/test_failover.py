import pytest

from registry.models import RoutingPolicy, Worker
from tests.conftest import SEED_ANSWER, seed_registration
from tests.fake_upstream import refused_url

pytestmark = pytest.mark.django_db


def register(api, url, **fields):
    response = api.post("/api/server/register", seed_registration(url, **fields), format="json")
    assert response.status_code == 200, response.json()


def complete(api):
    return api.post("/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json")


def test_it_fails_over_from_a_refusing_and_a_failing_worker_to_a_healthy_one(api, upstream):
    register(api, refused_url("/gen"))
    register(api, upstream.on("/broken", status=500, json={"error": "oom"}))
    register(api, upstream.on("/good", json=SEED_ANSWER))

    for _ in range(6):  # every rotation order of the three workers comes up
        response = complete(api)
        assert response.status_code == 200, response.json()
        assert response.json()["result"] == "I am a fake model."

    # Each request tried each failing worker at most once before reaching the good one.
    assert len(upstream.hits("/good")) == 6
    assert len(upstream.hits("/broken")) <= 6


def test_a_429_is_retried_on_another_worker_and_rests_the_first(api, upstream):
    RoutingPolicy.objects.create(model_name="proxyllm", strategy="round_robin")
    register(api, upstream.on("/busy", status=429, json={}, headers={"Retry-After": "30"}))
    register(api, upstream.on("/good", json=SEED_ANSWER))

    results = [complete(api).status_code for _ in range(4)]

    assert results == [200] * 4
    # Round robin would send every other first try there, but the 429 rests it for 30 s.
    assert len(upstream.hits("/busy")) == 1


def test_when_every_worker_fails_it_answers_502_after_trying_each_once(api, upstream):
    register(api, refused_url("/a"))
    register(api, upstream.on("/b", status=503, json={"error": "overloaded"}))

    response = complete(api)

    assert response.status_code == 502
    body = response.json()
    assert body["success"] is False
    assert body["attempts"] == 2
    assert "all 2 attempts on model 'proxyllm' failed" in body["msg"]
    assert len(upstream.hits("/b")) == 1


def test_a_refused_connection_alone_is_a_502_upstream_unreachable(api):
    register(api, refused_url("/a"))

    response = complete(api)

    assert response.status_code == 502
    assert response.json()["code"] == "upstream_unreachable"
    assert "connection refused" in response.json()["msg"]


def test_a_hanging_upstream_gives_504_after_its_timeout(api, upstream):
    register(api, upstream.on("/hang", json=SEED_ANSWER, delay=30), timeout=0.5)

    response = complete(api)

    assert response.status_code == 504
    assert response.json()["code"] == "upstream_timeout"
    assert "0.5 s" in response.json()["msg"]


def test_a_hanging_worker_is_skipped_for_a_healthy_one(api, upstream):
    RoutingPolicy.objects.create(model_name="proxyllm", strategy="round_robin")
    register(api, upstream.on("/hang", json=SEED_ANSWER, delay=30), timeout=0.3)
    register(api, upstream.on("/good", json=SEED_ANSWER))

    assert [complete(api).status_code for _ in range(2)] == [200, 200]
    assert len(upstream.hits("/hang")) == 1


def test_weights_share_traffic_and_zero_drains(api, upstream):
    RoutingPolicy.objects.create(model_name="proxyllm", strategy="round_robin")
    register(api, upstream.on("/heavy", json=SEED_ANSWER), weight=3)
    register(api, upstream.on("/light", json=SEED_ANSWER), weight=1)
    register(api, upstream.on("/drained", json=SEED_ANSWER), weight=0)

    for _ in range(8):
        assert complete(api).status_code == 200

    assert (len(upstream.hits("/heavy")), len(upstream.hits("/light")), len(upstream.hits("/drained"))) == (6, 2, 0)


def test_a_disabled_worker_gets_no_traffic(api, upstream):
    register(api, upstream.on("/off", json=SEED_ANSWER))
    register(api, upstream.on("/on", json=SEED_ANSWER))
    Worker.objects.filter(req_url_template__endswith="/off").update(enabled=False)

    for _ in range(3):
        assert complete(api).status_code == 200

    assert upstream.hits("/off") == []


def test_a_trickling_upstream_is_cut_off_at_its_timeout(api, upstream):
    # About 25 bytes, 0.3 s apart: the whole answer would take over 7 s; the worker allows 1 s.
    register(api, upstream.on("/slowly", json={"answer": "x" * 12}, trickle=0.3), response_extract="answer", timeout=1)

    response = complete(api)

    assert response.status_code == 504
    seen = upstream.hits("/slowly")[0]
    assert seen.answered.wait(timeout=20)
    assert seen.aborted  # the gateway dropped the connection rather than read on


def test_when_every_worker_answers_429_the_client_gets_429_with_the_shortest_retry_after(api, upstream):
    register(api, upstream.on("/busy-long", status=429, json={"error": "slow down"}, headers={"Retry-After": "30"}))
    register(api, upstream.on("/busy-short", status=429, json={"error": "slow down"}, headers={"Retry-After": "5"}))

    seed = complete(api)
    assert seed.status_code == 429
    assert seed["Retry-After"] == "5"
    body = seed.json()
    assert (body["success"], body["code"], body["attempts"]) == (False, "upstream_rate_limited", 2)

    for name, seconds in (("a", "30"), ("b", "5")):  # the same through /v1, on openai workers
        upstream.on(
            f"/{name}/chat/completions",
            status=429,
            json={"error": {"message": "slow down"}},
            headers={"Retry-After": seconds},
        )
        registered = api.post(
            "/api/server/register",
            {"model_name": "gpt", "preset": "openai", "base_url": upstream.url(f"/{name}")},
            format="json",
        )
        assert registered.status_code == 200, registered.content
    response = api.post(
        "/v1/chat/completions", {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}, format="json"
    )
    assert response.status_code == 429, response.content
    assert response["Retry-After"] == "5"
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_a_429_with_a_real_failure_among_the_tries_is_the_failure(api, upstream):
    register(api, upstream.on("/busy", status=429, json={}, headers={"Retry-After": "5"}))
    register(api, upstream.on("/broken", status=503, json={"error": "overloaded"}))

    response = complete(api)

    assert response.status_code == 502
    assert response.json()["code"] == "upstream_error"
    assert "HTTP 503" in response.json()["msg"]
