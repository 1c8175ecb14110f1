"""/metrics in one process (the multi-process case is in test_console_process.py)."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from registry.models import HealthState, Worker
from tests.conftest import SEED_ANSWER, seed_registration

pytestmark = pytest.mark.django_db


def samples(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_model_worker_and_status(api, client, upstream):
    api.post("/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER)), format="json")
    worker = Worker.objects.get()
    before = samples(client)

    for _ in range(3):
        api.post("/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json")
    api.post("/api/v1/chat/completions", {"model_name": "nobody", "input": "hi"}, format="json")
    after = samples(client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("mmm_requests_total", model="proxyllm", worker=str(worker.pk), status="200", code="") == 3
    # A name nobody registered is counted under one label, so random names cannot grow the series.
    assert grew("mmm_requests_total", model="<unknown>", worker="", status="404", code="model_not_found") == 1
    assert value(after, "mmm_requests_total", model="nobody", worker="", status="404", code="model_not_found") == 0
    assert grew("mmm_request_duration_seconds_count", model="proxyllm") == 3
    assert grew("mmm_upstream_duration_seconds_count", model="proxyllm", worker=str(worker.pk)) == 3
    assert value(after, "mmm_requests_in_flight", model="proxyllm") == 0


def test_worker_health_comes_from_the_database_at_scrape_time(client):
    worker = Worker.objects.create(
        model_name="m",
        req_url_template="http://127.0.0.1:9/x",
        body={"p": "{USER_PROMPT}"},
        health_state=HealthState.UNHEALTHY,
        weight=3,
        consecutive_failures=2,
    )
    labels = {"worker": str(worker.pk), "model": "m"}

    found = samples(client)

    assert value(found, "mmm_worker_unhealthy", **labels) == 1
    assert value(found, "mmm_worker_healthy", **labels) == 0
    assert value(found, "mmm_worker_routable", **labels) == 0
    assert value(found, "mmm_worker_weight", **labels) == 3
    assert value(found, "mmm_worker_consecutive_probe_failures", **labels) == 2


def test_ejection_and_in_flight_come_from_the_shared_routing_state(client, settings):
    from inference.outcomes import Outcome
    from inference.routing_state import EjectionPolicy, routing_state

    # The latency average fades while a worker is idle; an hour's fade leaves 5.0 for the time a
    # loaded machine takes between the failure and the scrape.
    settings.MMM_LATENCY_DECAY_SECONDS = 3600

    worker = Worker.objects.create(model_name="m", req_url_template="http://127.0.0.1:9/x", body={"p": "{USER_PROMPT}"})
    samples(client)  # the client's first request pays for loading the URLs and static files, not the scrape below
    state = routing_state()
    policy = EjectionPolicy(after_failures=1, base_seconds=30, max_seconds=30, max_percent=100)
    state.acquire(worker_id=worker.pk, token="held", hold_until=state.clock() + 60, max_inflight=None, panic=False)
    state.acquire(worker_id=worker.pk, token="failed", hold_until=state.clock() + 60, max_inflight=None, panic=False)
    state.finish(
        worker_id=worker.pk,
        token="failed",
        outcome=Outcome.FAILED,
        latency_ms=40.0,
        reason="HTTP 500",
        model_worker_ids=[worker.pk],
        policy=policy,
    )
    labels = {"worker": str(worker.pk), "model": "m"}

    found = samples(client)

    assert value(found, "mmm_worker_ejected", **labels) == 1
    assert value(found, "mmm_worker_in_flight", **labels) == 1
    assert value(found, "mmm_worker_latency_ewma_seconds", **labels) == pytest.approx(
        5.0, rel=0.01
    )  # a failure's penalty


def test_a_stream_is_in_flight_until_it_has_been_relayed(api, client, upstream):
    from tests.fake_model_apis import OpenAIServer

    registration = {
        "model_name": "gpt",
        "preset": "openai",
        "upstream_model": "up-model",
        "base_url": OpenAIServer().install(upstream),
    }
    assert api.post("/api/server/register", registration, format="json").status_code == 200
    ask = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "stream": True}

    response = api.post("/v1/chat/completions", ask, format="json")
    during = value(samples(client), "mmm_requests_in_flight", model="gpt")
    b"".join(response.streaming_content)
    after = value(samples(client), "mmm_requests_in_flight", model="gpt")

    assert (during, after) == (1, 0)


def test_mmm_worker_routable_agrees_with_v1_models_on_an_expired_heartbeat(client):
    from datetime import timedelta

    from django.utils import timezone

    alive = Worker.objects.create(
        model_name="alive", req_url_template="http://127.0.0.1:9/a", body={"p": "{USER_PROMPT}"}
    )
    expired = Worker.objects.create(
        model_name="expired",
        req_url_template="http://127.0.0.1:9/b",
        body={"p": "{USER_PROMPT}"},
        ttl=10,
        heartbeat_expires_at=timezone.now() - timedelta(seconds=1),
    )

    found = samples(client)
    listed = [model["id"] for model in client.get("/v1/models").json()["data"]]

    assert value(found, "mmm_worker_routable", worker=str(alive.pk), model="alive") == 1
    assert value(found, "mmm_worker_routable", worker=str(expired.pk), model="expired") == 0
    assert listed == ["alive"]
    # The row form says the same as the query both of them use.
    assert [worker.is_routable() for worker in (alive, expired)] == [True, False]


def test_requests_refused_before_the_view_are_counted_with_status_and_code(api, client, require_auth, make_key):
    before = samples(client)
    key = make_key("worker")  # a real key without the inference scope
    api.post("/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json")
    api.post(
        "/v1/chat/completions",
        {"model": "proxyllm", "messages": []},
        format="json",
        HTTP_AUTHORIZATION="Bearer mmm_abcdefgh_" + "x" * 43,
    )
    api.post(
        "/api/v1/chat/completions",
        {"model_name": "proxyllm", "input": "hi"},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    after = samples(client)

    def grew(**labels):
        labels = {"model": "<unknown>", "worker": "", **labels}
        return value(after, "mmm_requests_total", **labels) - value(before, "mmm_requests_total", **labels)

    assert grew(status="401", code="not_authenticated") == 1
    assert grew(status="401", code="authentication_failed") == 1
    assert grew(status="403", code="scope_missing") == 1
