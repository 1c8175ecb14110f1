"""One health per worker from probes and live traffic; the dashboard's unregistered names; the
add form's empty JSON."""

import re

import pytest

from console.dashboard import ModelStats, unregistered_grouped
from inference.traffic import Traffic
from registry.models import HealthState, Worker
from registry.worker_health import worker_health
from tests.test_admin import ADD, form

NOW = 1000.0


def worker(state=HealthState.UNKNOWN, **fields) -> Worker:
    return Worker(model_name="m", req_url_template="http://127.0.0.1:9/x", health_state=state, **fields)


@pytest.mark.parametrize(
    ("probes", "traffic", "state", "says"),
    [
        (
            HealthState.HEALTHY,
            Traffic(ejected_until=NOW + 20, ejections=1, ejection_reason="HTTP 503"),
            "ejected",
            "ejected for 20 s more by live traffic: HTTP 503",
        ),
        (
            HealthState.UNHEALTHY,
            Traffic(recent_ok=5, recent_total=5),
            "unhealthy",
            "1 probe(s) failed in a row: refused",
        ),
        (HealthState.HEALTHY, Traffic(ejections=1), "recovering", "the next request is a trial"),
        (
            HealthState.HEALTHY,
            Traffic(consecutive_failures=2, recent_total=4, recent_ok=2),
            "failing",
            "the last 2 request(s)",
        ),
        (
            HealthState.UNKNOWN,
            Traffic(recent_ok=9, recent_total=10),
            "healthy",
            "answering traffic: 90% of 10 recent requests",
        ),
        (HealthState.HEALTHY, None, "healthy", "the last probe passed"),
        (HealthState.UNKNOWN, None, "unknown", "no probe and no recent traffic yet"),
    ],
)
def test_health_combines_probes_and_live_traffic(probes, traffic, state, says):
    health = worker_health(worker(probes, consecutive_failures=1, last_error="refused"), traffic, NOW)
    assert health.state == state
    assert says in health.reason


def test_names_without_a_worker_share_one_row_with_their_counts_added():
    def stats(name, requests, errors):
        row = ModelStats(name, 2, 1)
        row.requests, row.errors = [requests, 0], [errors, 0]
        row.overall.add(3, requests)
        return row

    rows, names = unregistered_grouped(
        [stats("known", 5, 0), stats("typo", 2, 0), stats("no-such-model", 3, 1)], registered={"known"}
    )
    assert [row.model_name for row in rows] == ["known", "other: 2 unregistered name(s)"]
    assert (rows[1].total_requests, rows[1].total_errors, rows[1].overall.total) == (5, 1, 5)
    assert names == ["typo", "no-such-model"]
    assert unregistered_grouped([stats("known", 1, 0)], registered={"known"})[1] == []


@pytest.mark.django_db
def test_the_add_form_starts_with_empty_valid_json(admin_client):
    html = admin_client.get(ADD).content.decode()
    for name in ("headers", "body"):
        box = re.search(rf'<textarea[^>]*id="id_{name}"[^>]*>(.*?)</textarea>', html, re.S)
        assert box and box.group(1).strip() == "{}", name


@pytest.mark.django_db
def test_an_openai_worker_saved_with_the_forms_empty_body_has_no_body(admin_client):
    response = admin_client.post(
        ADD, form(kind="openai", req_url_template="http://127.0.0.1:9000/v1", body="{}", response_extract="")
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Worker.objects.get().body is None
