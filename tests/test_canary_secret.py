"""A canary secret in a worker's headers and URL query string reaches the upstream and nothing
else: no answer, error body, stored error, log line or plain database column, on every path."""

import json
import logging

import pytest
from django.core.management import call_command
from django.db import connection

from tests.conftest import seed_registration
from tests.fake_upstream import Reply, refused_url

pytestmark = pytest.mark.django_db

HEADER_CANARY = "sk-hdr-canary-" + "Zx9" * 12
QUERY_CANARY = "qry-canary-" + "Pw4" * 12


def echo(status: int, delay: float = 0.0):
    """An upstream that quotes back everything it was sent, as real ones do in their errors."""

    def answer(seen):
        quoted = {"path": seen.path, "headers": seen.headers, "body": seen.body.decode()}
        if status == 200:
            return Reply(json={"answer": "fine"}, delay=delay)
        return Reply(status=status, json={"error": f"bad request: {json.dumps(quoted)}"}, delay=delay)

    return answer


def probe() -> None:
    try:
        call_command("probe_workers")
    except SystemExit:  # 1 when a worker failed its probe
        pass


def database_dump() -> str:
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            chunks.append(repr(cursor.fetchall()))
    return "\n".join(chunks)


@pytest.mark.parametrize(
    "path_kind, status, expected",
    [("success", 200, 200), ("4xx", 401, 502), ("5xx", 500, 502), ("timeout", 200, 504), ("refused", None, 502)],
)
def test_the_canary_goes_upstream_and_nowhere_else(api, upstream, caplog, capsys, path_kind, status, expected):
    caplog.set_level(logging.DEBUG)
    if path_kind == "refused":
        base = refused_url("/gen")
    else:
        base = upstream.on("/gen", echo(status, delay=2.0 if path_kind == "timeout" else 0.0))
    url = f"{base}?key={QUERY_CANARY}&prompt={{USER_PROMPT}}"
    registration = seed_registration(
        url,
        headers={"Authorization": f"Bearer {HEADER_CANARY}", "X-Api-Key": HEADER_CANARY},
        response_extract="answer",
        timeout=0.5,
    )

    answers = [
        api.post("/api/server/register", registration, format="json"),
        api.post("/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json"),
        api.get("/api/server/workers"),
        api.post("/api/server/offline", {"model_name": "nope", "req_url_template": url}, format="json"),
    ]
    for _ in range(2):  # the second probe of a healthy worker passes again
        probe()
    printed = capsys.readouterr()

    assert answers[1].status_code == expected, answers[1].json()
    if path_kind != "refused":
        sent = upstream.hits("/gen")[0]
        assert sent.headers["Authorization"] == f"Bearer {HEADER_CANARY}"
        assert f"key={QUERY_CANARY}" in sent.path
    seen_by_people = [
        *(answer.content.decode() for answer in answers),
        printed.out,
        printed.err,
        *(record.getMessage() + (record.exc_text or "") for record in caplog.records),
        caplog.text,
    ]
    for canary in (HEADER_CANARY, QUERY_CANARY):
        for text in seen_by_people:
            assert canary not in text
            assert canary[:16] not in text  # nor a cut-off start of it
    dump = database_dump()
    assert HEADER_CANARY[:16] not in dump and QUERY_CANARY[:16] not in dump


# One canary per place a worker keeps a credential; none may be shown anywhere.
CANARIES = {
    "url password": "pw-canary-" + "Lk8" * 12,
    "url query": "qv-canary-" + "Mn3" * 12,
    "body field": "bf-canary-" + "Rt6" * 12,
    "header": "hv-canary-" + "Yu2" * 12,
    "health url password": "hp-canary-" + "Ds5" * 12,
    "legacy field": "lg-canary-" + "Fg7" * 12,
}


def assert_no_canary(where: str, text: str) -> None:
    for place, canary in CANARIES.items():
        assert canary[:16] not in text, f"the {place} canary is in {where}"


@pytest.fixture
def canary_worker(api, upstream):
    """A worker holding every canary, after one completion, one probe and a request-log flush."""
    from console.request_log import request_log_writer
    from registry.models import Worker

    base = upstream.on("/gen", echo(200)).replace("http://", f"http://svc:{CANARIES['url password']}@")
    upstream.on("/health", json={"ok": True})
    registration = seed_registration(
        f"{base}?key={CANARIES['url query']}&prompt={{USER_PROMPT}}",
        body={"input": "{USER_PROMPT}", "api_key": CANARIES["body field"]},
        headers={"X-Api-Key": CANARIES["header"], "X-Team": "t"},
        health_url=upstream.url("/health").replace("http://", f"http://svc:{CANARIES['health url password']}@"),
        req_param={"access_token": CANARIES["legacy field"]},
        response_extract="answer",
    )
    response = api.post("/api/server/register", registration, format="json")
    assert response.status_code == 200, response.json()
    api.post("/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json")
    probe()
    request_log_writer.flush()
    return Worker.objects.get()


def test_no_admin_page_shows_a_stored_secret(admin_client, canary_worker):
    worker = f"/admin/registry/worker/{canary_worker.pk}"
    pages = [
        "/admin/registry/worker/",
        f"{worker}/change/",
        "/admin/registry/worker/add/",
        f"{worker}/history/",
        f"{worker}/delete/",
        f"{worker}/try/",
        "/admin/registry/workerevent/",
        "/admin/console/requestlog/",
        "/admin/console/proberecord/",
        "/admin/registry/modelowner/",
        "/admin/dashboard/",
        "/admin/",
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        assert_no_canary(page, response.content.decode())
    bulk_delete = admin_client.post(
        "/admin/registry/worker/", {"action": "delete_selected", "_selected_action": [canary_worker.pk]}
    )
    assert bulk_delete.status_code == 200 and "Are you sure" in bulk_delete.content.decode()
    assert_no_canary("the bulk delete confirmation", bulk_delete.content.decode())
    for name in ("_try", "_probe"):  # the try page's test prompt and probe, with their reports
        response = admin_client.post(f"{worker}/try/", {"prompt": "hi", name: "1"})
        assert response.status_code == 200
        assert_no_canary(f"the try page after {name}", response.content.decode())


def test_the_dashboard_shows_the_workers_url_masked(admin_client, canary_worker, upstream):
    page = admin_client.get("/admin/dashboard/").content.decode()

    assert f"http://***@127.0.0.1:{upstream.port}/gen?key=***" in page
    assert_no_canary("the dashboard", page)


def form_as_shown(admin_client, worker, **changes) -> dict:
    """The change form's fields as the page shows them (secrets masked), with ``changes``."""
    shown = admin_client.get(f"/admin/registry/worker/{worker.pk}/change/").context["adminform"].form
    form = {name: shown.initial.get(name) if name in shown.initial else "" for name in shown.fields}
    form.update(
        {
            "headers": json.dumps(shown.initial["headers"]),
            "body": json.dumps(shown.initial["body"]),
            "enabled": "on",
            "weight": "1",
            "timeout": "",
            "max_inflight": "",
            "capacity": "",
            "job_api": "",
            "ttl": "",
            **changes,
        }
    )
    return form


def test_trying_the_change_form_as_shown_sends_the_stored_secrets_and_shows_none(admin_client, canary_worker, upstream):
    form = form_as_shown(admin_client, canary_worker, _trial_prompt="hello", _trial_temperature="")

    response = admin_client.post(f"/admin/registry/worker/try/?of={canary_worker.pk}", form)

    assert response.status_code == 200, response.content.decode()
    sent = upstream.hits("/gen")[-1]
    assert f"key={CANARIES['url query']}" in sent.path and sent.headers["X-Api-Key"] == CANARIES["header"]
    assert sent.json["api_key"] == CANARIES["body field"]
    assert_no_canary("the try-before-saving report", response.content.decode())


def test_saving_the_change_form_as_shown_keeps_every_stored_secret(admin_client, canary_worker, upstream):
    from registry.models import Worker

    change = f"/admin/registry/worker/{canary_worker.pk}/change/"
    form = form_as_shown(admin_client, canary_worker, weight="3")
    assert CANARIES["url query"] not in form["req_url_template"] and "***" in form["req_url_template"]

    response = admin_client.post(change, form)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    saved = Worker.objects.get()
    assert saved.weight == 3
    assert (saved.req_url_template, saved.health_url, saved.headers, saved.body) == (
        canary_worker.req_url_template,
        canary_worker.health_url,
        canary_worker.headers,
        canary_worker.body,
    )
    history = admin_client.get(f"/admin/registry/worker/{canary_worker.pk}/history/").content.decode()
    assert "Changed Weight." in history  # the secrets were not "changed"
    assert_no_canary("the history after a save", history)
    assert_no_canary("the database", database_dump())


def test_a_value_typed_over_a_mask_replaces_the_stored_one(admin_client, canary_worker):
    from registry.models import Worker

    change = f"/admin/registry/worker/{canary_worker.pk}/change/"
    form = form_as_shown(
        admin_client,
        canary_worker,
        headers=json.dumps({"X-Api-Key": "new-header-key", "X-Team": "***"}),
        body=json.dumps({"input": "{USER_PROMPT}", "api_key": "new-body-key"}),
    )
    form["req_url_template"] = form["req_url_template"].replace("key=***", "key=new-query-key")

    assert admin_client.post(change, form).status_code == 302

    saved = Worker.objects.get()
    assert f"svc:{CANARIES['url password']}@" in saved.req_url_template  # still masked, so kept
    assert "key=new-query-key" in saved.req_url_template
    assert saved.headers == {"X-Api-Key": "new-header-key", "X-Team": "t"}
    assert saved.body == {"input": "{USER_PROMPT}", "api_key": "new-body-key"}


def test_no_api_answer_shows_a_stored_secret(api, canary_worker, upstream):
    answers = {
        "the worker list": api.get("/api/server/workers"),
        "a preset's registration": api.post(
            "/api/server/register",
            {
                "model_name": "gpt",
                "preset": "openai",
                "base_url": upstream.url("/v1") + "?key=" + CANARIES["url query"],
                "api_key": CANARIES["header"],
            },
            format="json",
        ),
        "an unknown worker's offline": api.post(
            "/api/server/offline",
            {"model_name": "nope", "req_url_template": canary_worker.req_url_template},
            format="json",
        ),
        "the models": api.get("/v1/models"),
        "the metrics": api.get("/metrics"),
    }
    for where, response in answers.items():
        assert response.status_code < 500, where
        assert_no_canary(where, response.content.decode())
    assert_no_canary("the database", database_dump())
