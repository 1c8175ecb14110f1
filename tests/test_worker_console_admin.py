"""The worker admin's console: test prompt, probe now, drain, try before saving."""

import json

import pytest

from console.models import ProbeRecord
from registry.models import HealthState, Worker
from tests.conftest import SEED_ANSWER
from tests.fake_upstream import refused_url

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/registry/worker/"
TRY_UNSAVED = "/admin/registry/worker/try/"
API_KEY = "sk-live-0123456789abcdef"


def make_worker(url: str, **fields) -> Worker:
    defaults = {
        "model_name": "proxyllm",
        "body": {"input": "{USER_PROMPT}", "model": "{MODEL_NAME}"},
        "response_extract": "data.items[].attributes.answer",
        "headers": {"Authorization": f"Bearer {API_KEY}"},
    }
    return Worker.objects.create(req_url_template=url, **{**defaults, **fields})


def form(url: str, **overrides) -> dict:
    data = {
        "model_name": "proxyllm",
        "req_url_template": url,
        "method": "POST",
        "headers": json.dumps({"X-Api-Key": API_KEY}),
        "body": json.dumps({"input": "{USER_PROMPT}"}),
        "response_extract": "data.items[].attributes.answer",
        "owner": "",
        "weight": "1",
        "enabled": "on",
        "timeout": "",
        "health_url": "",
        "kind": "template",
        "_trial_prompt": "hello there",
        "_trial_temperature": "",
    }
    data.update(overrides)
    return data


def test_a_test_prompt_shows_the_masked_request_the_raw_answer_and_the_extracted_result(admin_client, upstream):
    # The upstream quotes the key back, as real ones do in their errors.
    answer = {"data": {"items": [{"attributes": {"answer": "Hello from the fake."}}]}, "echo": API_KEY}
    worker = make_worker(upstream.on("/gen", json=answer))

    page = admin_client.post(
        f"{CHANGELIST}{worker.pk}/try/", {"prompt": "say hi", "temperature": "0.5", "_send": "1"}
    ).content.decode()

    assert "Hello from the fake." in page
    assert "Authorization: ***" in page
    assert "&quot;input&quot;: &quot;say hi&quot;" in page  # the rendered body
    assert "HTTP 200" in page and "&quot;echo&quot;: &quot;***&quot;" in page
    assert API_KEY not in page
    assert upstream.hits("/gen")[0].json == {"input": "say hi", "model": "proxyllm"}
    assert upstream.hits("/gen")[0].headers["Authorization"] == f"Bearer {API_KEY}"  # masked on screen only


def test_a_test_prompt_names_the_step_that_failed(admin_client, upstream):
    worker = make_worker(upstream.on("/gen", json={"other": "shape"}))

    page = admin_client.post(f"{CHANGELIST}{worker.pk}/try/", {"prompt": "hi", "_send": "1"}).content.decode()

    assert "response_extract" in page and "failed" in page
    assert "&quot;other&quot;: &quot;shape&quot;" in page  # the raw answer, to see what changed


def test_probe_now_on_the_try_page_records_the_result(admin_client):
    worker = make_worker(refused_url("/gen"))

    page = admin_client.post(f"{CHANGELIST}{worker.pk}/try/", {"_probe": "1"}).content.decode()

    assert "Probe: failed" in page and "connection refused" in page
    worker.refresh_from_db()
    assert worker.health_state == HealthState.UNHEALTHY
    assert ProbeRecord.objects.filter(worker=worker, ok=False).count() == 1


def test_the_probe_now_action_reports_each_worker(admin_client, upstream):
    up = make_worker(upstream.on("/up", json=SEED_ANSWER))
    down = make_worker(refused_url("/down"))

    response = admin_client.post(
        CHANGELIST, {"action": "probe_workers_now", "_selected_action": [up.pk, down.pk]}, follow=True
    )

    shown = [str(message) for message in response.context["messages"]]
    assert any(f"Worker {up.pk} (proxyllm): probe passed" in text and "now healthy" in text for text in shown)
    assert any(
        f"Worker {down.pk} (proxyllm): probe failed: " in text and "connection refused" in text for text in shown
    )
    assert ProbeRecord.objects.count() == 2


def test_drain_sets_the_weight_to_zero(admin_client):
    worker = make_worker("http://127.0.0.1:9/gen", weight=5)

    admin_client.post(CHANGELIST, {"action": "drain_workers", "_selected_action": [worker.pk]})

    worker.refresh_from_db()
    assert (worker.weight, worker.enabled) == (0, True)


def test_try_before_saving_uses_the_unsaved_values_and_saves_nothing(admin_client, upstream):
    url = upstream.on("/gen", json={"data": {"items": [{"attributes": {"answer": "unsaved works"}}]}})

    response = admin_client.post(TRY_UNSAVED, form(url))

    assert response.status_code == 200
    page = response.content.decode()
    assert "unsaved works" in page and "X-Api-Key: ***" in page and API_KEY not in page
    assert upstream.hits("/gen")[0].json == {"input": "hello there"}
    assert not Worker.objects.exists()


def test_try_before_saving_on_a_change_form_tries_the_edited_values(admin_client, upstream):
    worker = make_worker(upstream.on("/old", json=SEED_ANSWER))
    new_url = upstream.on("/new", json=SEED_ANSWER)

    response = admin_client.post(f"{TRY_UNSAVED}?of={worker.pk}", form(new_url))

    assert response.status_code == 200 and "I am a fake model." in response.content.decode()
    assert upstream.hits("/new") and not upstream.hits("/old")
    worker.refresh_from_db()
    assert worker.req_url_template.endswith("/old")


@pytest.mark.parametrize(
    "override, says",
    [
        ({"body": json.dumps({"input": "no placeholder"})}, "must contain {USER_PROMPT}"),
        ({"_trial_temperature": "hot"}, "temperature: &#x27;hot&#x27; is not a number"),
    ],
)
def test_try_before_saving_answers_400_with_what_is_wrong(admin_client, override, says):
    response = admin_client.post(TRY_UNSAVED, form("http://127.0.0.1:9/gen", **override))

    assert response.status_code == 400
    assert says in response.content.decode()


def test_the_console_pages_are_for_signed_in_staff(client):
    worker = make_worker("http://127.0.0.1:9/gen")

    assert client.post(TRY_UNSAVED, form("http://127.0.0.1:9/gen")).status_code == 302
    assert client.get(f"{CHANGELIST}{worker.pk}/try/").status_code == 302


def test_the_add_form_has_the_try_panel(admin_client):
    page = admin_client.get("/admin/registry/worker/add/").content.decode()

    assert 'id="trial-panel"' in page and TRY_UNSAVED in page


def test_a_test_prompt_masks_keys_in_the_url_and_the_body_template_too(admin_client, upstream):
    # Some APIs take their key in the query string or the JSON body; the upstream quotes both back.
    answer = {"data": {"items": [{"attributes": {"answer": "ok"}}]}, "echo": ["querysecret123", "sk-body-secret-123"]}
    url = upstream.on("/gen", json=answer).replace("http://", "http://user:urlpass456@") + "?code=querysecret123"
    worker = Worker.objects.create(
        model_name="proxyllm",
        req_url_template=url,
        response_extract="data.items[].attributes.answer",
        body={"input": "{USER_PROMPT}", "api_key": "sk-body-secret-123"},
    )

    page = admin_client.post(f"{CHANGELIST}{worker.pk}/try/", {"prompt": "hi", "_send": "1"}).content.decode()

    assert "ok" in page
    for secret in ("querysecret123", "sk-body-secret-123", "urlpass456"):
        assert secret not in page


def test_a_test_prompt_to_an_anthropic_worker_shows_the_translated_request_and_its_text(admin_client, upstream):
    from tests.fake_anthropic import AnthropicServer

    server = AnthropicServer(api_key=API_KEY)
    worker = Worker.objects.create(
        model_name="claude",
        kind="anthropic",
        req_url_template=server.install(upstream),
        headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01"},
        upstream_model="claude-haiku-4-5",
    )

    page = admin_client.post(f"{CHANGELIST}{worker.pk}/try/", {"prompt": "say hi", "_send": "1"}).content.decode()

    assert "Hello from Claude." in page
    assert "x-api-key: ***" in page and API_KEY not in page
    assert "/v1/messages" in page and "&quot;max_tokens&quot;: 1024" in page
    assert server.bodies[-1]["messages"] == [{"role": "user", "content": [{"type": "text", "text": "say hi"}]}]
