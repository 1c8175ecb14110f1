import json

import pytest

from registry.models import HealthState, Worker

pytestmark = pytest.mark.django_db

ADD = "/admin/registry/worker/add/"
CHANGELIST = "/admin/registry/worker/"


def form(**overrides) -> dict:
    data = {
        "model_name": "proxyllm",
        "kind": "template",
        "req_url_template": "http://127.0.0.1:9000/gen",
        "method": "POST",
        "headers": "{}",
        "body": json.dumps({"input": "{USER_PROMPT}"}),
        "response_extract": "data.answer",
        "owner": "ops",
        "weight": "1",
        "enabled": "on",
        "timeout": "",
        "health_url": "",
    }
    data.update(overrides)
    return data


def make_worker(**fields) -> Worker:
    defaults = {
        "model_name": "proxyllm",
        "req_url_template": "http://127.0.0.1:9000/gen",
        "body": {"p": "{USER_PROMPT}"},
    }
    return Worker.objects.create(**{**defaults, **fields})


def test_the_admin_adds_a_valid_worker(admin_client):
    response = admin_client.post(ADD, form())

    assert response.status_code == 302
    worker = Worker.objects.get()
    assert (worker.model_name, worker.body, worker.response_extract) == (
        "proxyllm",
        {"input": "{USER_PROMPT}"},
        "data.answer",
    )


@pytest.mark.parametrize(
    "override, says",
    [
        ({"req_url_template": "ftp://x/y"}, "must be an absolute http:// or https:// URL"),
        ({"body": json.dumps({"input": "no placeholder"})}, "must contain {USER_PROMPT}"),
        ({"response_extract": "a..b"}, "is empty"),
        ({"body": '"just a string"'}, "must be a JSON object or array"),
        ({"weight": "-2"}, "greater than or equal to 0"),
    ],
)
def test_the_admin_refuses_what_the_api_refuses(admin_client, override, says):
    response = admin_client.post(ADD, form(**override))

    assert response.status_code == 200  # the form again, with the error
    assert says in response.content.decode()
    assert not Worker.objects.exists()


def test_the_admin_refuses_a_duplicate_worker(admin_client):
    make_worker()

    response = admin_client.post(ADD, form())

    assert "already exists" in response.content.decode()
    assert Worker.objects.count() == 1


def test_the_list_shows_health_weight_probe_and_last_error(admin_client):
    make_worker(health_state=HealthState.UNHEALTHY, weight=3, last_error="connection refused", latency_ms=12.4)

    page = admin_client.get(CHANGELIST).content.decode()

    assert "unhealthy" in page
    assert "connection refused" in page
    assert "12 ms" in page


def test_the_list_filters_by_health_and_searches_by_url(admin_client):
    make_worker(req_url_template="http://10.0.0.1/a", health_state=HealthState.UNHEALTHY)
    make_worker(req_url_template="http://10.0.0.2/b", health_state=HealthState.HEALTHY)

    unhealthy = admin_client.get(CHANGELIST, {"health_state": "unhealthy"}).context["cl"].result_list
    searched = admin_client.get(CHANGELIST, {"q": "10.0.0.2"}).context["cl"].result_list

    assert [w.req_url_template for w in unhealthy] == ["http://10.0.0.1/a"]
    assert [w.req_url_template for w in searched] == ["http://10.0.0.2/b"]


def test_enable_and_disable_actions(admin_client):
    worker = make_worker()

    admin_client.post(CHANGELIST, {"action": "disable_workers", "_selected_action": [worker.pk]})
    worker.refresh_from_db()
    assert worker.enabled is False

    admin_client.post(CHANGELIST, {"action": "enable_workers", "_selected_action": [worker.pk]})
    worker.refresh_from_db()
    assert worker.enabled is True


def test_editing_a_worker_keeps_its_health_record(admin_client):
    worker = make_worker(health_state=HealthState.UNHEALTHY, last_error="probe failed")
    change = f"/admin/registry/worker/{worker.pk}/change/"

    response = admin_client.post(change, form(body=json.dumps({"p": "{USER_PROMPT}"}), weight="4"))

    assert response.status_code == 302
    worker.refresh_from_db()
    assert worker.weight == 4
    assert (worker.health_state, worker.last_error) == (HealthState.UNHEALTHY, "probe failed")


def test_the_admin_carries_the_gateways_name(admin_client):
    assert "mmm — multi-model manager" in admin_client.get("/admin/").content.decode()


def test_the_list_and_the_worker_page_show_live_traffic_from_the_routing_state(admin_client):
    from inference.outcomes import Outcome
    from inference.routing_state import EjectionPolicy, routing_state

    ejected, busy = make_worker(), make_worker(req_url_template="http://127.0.0.1:9001/gen")
    state = routing_state()
    hold = state.clock() + 60
    for token in ("a", "b"):
        state.acquire(worker_id=busy.pk, token=token, hold_until=hold, max_inflight=None, panic=False)
    state.acquire(worker_id=ejected.pk, token="f", hold_until=hold, max_inflight=None, panic=False)
    state.finish(
        worker_id=ejected.pk,
        token="f",
        outcome=Outcome.FAILED,
        latency_ms=5.0,
        reason="HTTP 503",
        model_worker_ids=[ejected.pk, busy.pk],
        policy=EjectionPolicy(after_failures=1, base_seconds=30, max_seconds=30, max_percent=50),
    )

    page = admin_client.get(CHANGELIST)
    detail = admin_client.get(f"{CHANGELIST}{ejected.pk}/change/").content.decode()

    rows = {row.pk: row for row in page.context["cl"].result_list}
    text = page.content.decode()
    assert set(rows) == {ejected.pk, busy.pk}
    assert '<td class="field-in_flight">2</td>' in text
    assert "for 30 s" in text or "for 29 s" in text
    assert "ejected for" in detail and "HTTP 503" in detail


@pytest.mark.parametrize("action", ["enable_workers", "disable_workers", "drain_workers", "probe_workers_now"])
def test_staff_who_may_only_view_workers_cannot_run_actions_on_them(client, django_user_model, action):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_worker"))
    client.force_login(viewer)
    worker = make_worker(enabled=False, weight=5)

    client.post(CHANGELIST, {"action": action, "_selected_action": [worker.pk]})

    worker.refresh_from_db()
    assert (worker.enabled, worker.weight, worker.last_probe_at) == (False, 5, None)


def test_a_workers_name_in_admin_pages_hides_its_query_string():
    worker = Worker(model_name="m", req_url_template="http://127.0.0.1:9/gen?key=querysecret123")

    assert "querysecret123" not in str(worker)
