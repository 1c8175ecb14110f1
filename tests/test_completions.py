import json

import pytest

from registry.models import HealthState, Worker
from tests.conftest import SEED_ANSWER, seed_registration
from tests.fake_upstream import Reply

pytestmark = pytest.mark.django_db

COMPLETIONS = "/api/v1/chat/completions"


def register(api, url, **fields):
    response = api.post("/api/server/register", seed_registration(url, **fields), format="json")
    assert response.status_code == 200, response.json()


def complete(api, **payload):
    return api.post(COMPLETIONS, {"model_name": "proxyllm", "input": "who are you?", **payload}, format="json")


def test_it_answers_the_seed_example_with_the_extracted_result(api, upstream):
    register(api, upstream.on("/api/generate", json=SEED_ANSWER))

    response = complete(api)

    assert response.status_code == 200
    assert response.json() == {"success": True, "msg": "execute succeed", "result": "I am a fake model."}
    sent = upstream.hits("/api/generate")[0]
    assert sent.method == "POST"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json == {"input": "who are you?", "model_name": "proxyllm"}


@pytest.mark.parametrize(
    "answer",
    [42, 3.5, True, None, {"nested": ["object", 1]}, ["a", "list"], "plain string"],
)
def test_the_result_keeps_its_json_type(api, upstream, answer):
    register(api, upstream.on("/gen", json={"out": answer}), response_extract="out")

    assert complete(api).json()["result"] == answer


def test_an_empty_extract_path_returns_the_whole_json_response(api, upstream):
    register(api, upstream.on("/gen", json={"a": [1, 2]}), response_extract="")

    assert complete(api).json()["result"] == {"a": [1, 2]}


def test_an_empty_extract_path_returns_text_when_the_upstream_answers_text(api, upstream):
    register(api, upstream.on("/gen", text="hello from a text server"), response_extract="")

    assert complete(api).json()["result"] == "hello from a text server"


@pytest.mark.parametrize(
    "prompt",
    [
        'she said "hi"',
        "back\\slash \\n not a newline",
        "line one\nline two\r\n\ttabbed",
        "non-ASCII: 你好, Grüße, emoji 🚀",
        "the literal text {MODEL_NAME} and {MODEL_TEMPERATURE} and {USER_PROMPT}",
        "x" * 10_000,
        "",
    ],
)
def test_prompts_arrive_at_the_upstream_unchanged(api, upstream, prompt):
    url = upstream.on("/gen", lambda seen: Reply(json={"echo": seen.json["messages"][0]["content"]}))
    body = {"model": "{MODEL_NAME}", "messages": [{"role": "user", "content": "{USER_PROMPT}"}]}
    register(api, url, body=body, response_extract="echo")

    response = complete(api, input=prompt)

    assert response.status_code == 200, response.json()
    assert response.json()["result"] == prompt
    assert upstream.hits("/gen")[0].json["model"] == "proxyllm"


def test_the_stored_template_is_never_changed_by_a_request(api, upstream):
    body = {"input": "{USER_PROMPT}", "model_name": "{MODEL_NAME}"}
    register(api, upstream.on("/gen", json=SEED_ANSWER), body=body)

    complete(api, input="first user")
    complete(api, input="second user")

    assert Worker.objects.get().body == body
    assert [seen.json["input"] for seen in upstream.hits("/gen")] == ["first user", "second user"]


def test_temperature_is_sent_as_a_number(api, upstream):
    body = {"prompt": "{USER_PROMPT}", "temperature": "{MODEL_TEMPERATURE}", "note": "t={MODEL_TEMPERATURE}"}
    register(api, upstream.on("/gen", json=SEED_ANSWER), body=body)

    complete(api, temperature=0.7)

    sent = upstream.hits("/gen")[0].json
    assert sent["temperature"] == 0.7
    assert sent["note"] == "t=0.7"


def test_without_a_temperature_the_key_is_left_out(api, upstream):
    body = {"prompt": "{USER_PROMPT}", "options": {"temperature": "{MODEL_TEMPERATURE}", "top_p": 1}}
    register(api, upstream.on("/gen", json=SEED_ANSWER), body=body)

    complete(api)

    assert upstream.hits("/gen")[0].json == {"prompt": "who are you?", "options": {"top_p": 1}}


def test_model_name_and_prompt_in_the_url_are_percent_encoded(api, upstream):
    upstream.on("/models/a%20b%26c/generate", json=SEED_ANSWER)
    register(
        api, upstream.url("/models/{MODEL_NAME}/generate?q={USER_PROMPT}"), model_name="a b&c", method="GET", body=None
    )

    response = api.post(COMPLETIONS, {"model_name": "a b&c", "input": "1+1=?&x"}, format="json")

    assert response.status_code == 200, response.json()
    seen = upstream.seen[0]
    assert seen.method == "GET"
    assert seen.path == "/models/a%20b%26c/generate?q=1%2B1%3D%3F%26x"
    assert seen.body == b""


def test_worker_headers_are_sent_upstream(api, upstream):
    register(api, upstream.on("/gen", json=SEED_ANSWER), headers={"Authorization": "Bearer upstream-key"})

    complete(api)

    assert upstream.hits("/gen")[0].headers["Authorization"] == "Bearer upstream-key"


def test_an_unknown_model_is_a_404(api):
    response = complete(api, model_name="nope")

    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "msg": "no worker is registered for model 'nope'",
        "code": "model_not_found",
        "model_name": "nope",
    }


def test_a_model_whose_workers_are_all_disabled_or_drained_is_a_503(api, upstream):
    url = upstream.on("/gen", json=SEED_ANSWER)
    register(api, url, weight=0)
    register(api, url + "?b", enabled=False)

    response = complete(api)

    assert response.status_code == 503
    assert response.json()["code"] == "no_routable_worker"
    assert upstream.seen == []


def test_an_unhealthy_worker_gets_no_traffic_while_a_healthy_one_is_there(api, upstream):
    healthy = upstream.on("/healthy", json=SEED_ANSWER)
    sick = upstream.on("/sick", json=SEED_ANSWER)
    register(api, healthy)
    register(api, sick)
    Worker.objects.filter(req_url_template=sick).update(health_state=HealthState.UNHEALTHY)

    for _ in range(6):
        assert complete(api).status_code == 200

    assert {seen.path for seen in upstream.seen} == {"/healthy"}


def test_when_every_worker_is_unhealthy_they_are_tried_anyway_and_the_log_says_panic(api, upstream, caplog):
    url = upstream.on("/gen", json=SEED_ANSWER)
    register(api, url)
    Worker.objects.filter(req_url_template=url).update(health_state=HealthState.UNHEALTHY)

    response = complete(api)

    assert response.status_code == 200
    assert len(upstream.seen) == 1
    assert "panic mode" in caplog.text


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"input": None}, "input"),
        ({"input": 5}, "input"),
        ({"model_name": ""}, "model_name"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": -1}, "temperature"),
    ],
)
def test_bad_completion_requests_are_a_400_naming_the_field(api, payload, field):
    response = complete(api, **payload)

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert response.json()["code"] == "invalid"


def test_a_missing_input_is_a_400(api):
    response = api.post(COMPLETIONS, {"model_name": "proxyllm"}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"]["input"] == ["This field is required."]


def test_malformed_json_is_a_400(api):
    response = api.post(COMPLETIONS, "{nope", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_an_upstream_4xx_is_a_502_carrying_its_status_and_is_not_retried(api, upstream):
    url = upstream.on("/gen", status=422, json={"detail": "bad field"})
    register(api, url)
    register(api, url + "?second")

    response = complete(api)

    assert response.status_code == 502
    body = response.json()
    assert body["code"] == "upstream_rejected"
    assert body["upstream_status"] == 422
    assert "HTTP 422" in body["msg"]
    assert len(upstream.hits("/gen")) == 1


def test_an_extract_path_that_does_not_match_is_a_502_naming_the_segment(api, upstream):
    register(api, upstream.on("/gen", json={"data": {"items": []}}))

    response = complete(api)

    assert response.status_code == 502
    body = response.json()
    assert body["code"] == "extract_failed"
    assert body["path"] == "data.items[].attributes.answer"
    assert body["failed_at"] == "data.items[0]"
    assert "data.items[].attributes.answer" in body["msg"]
    assert "out of range" in body["msg"]


def test_a_non_json_answer_with_an_extract_path_is_a_502(api, upstream):
    register(api, upstream.on("/gen", text="<html>oops</html>"))

    response = complete(api)

    assert response.status_code == 502
    assert response.json()["code"] == "extract_failed"
    assert "not JSON" in response.json()["msg"]


def test_a_redirect_is_not_followed(api, upstream):
    upstream.on("/moved", status=302, json={}, headers={"Location": upstream.url("/elsewhere")})
    upstream.on("/elsewhere", json=SEED_ANSWER)
    register(api, upstream.url("/moved"))

    response = complete(api)

    assert response.status_code == 502
    assert upstream.hits("/elsewhere") == []


def test_error_messages_do_not_show_the_urls_query_string(api, upstream):
    register(api, upstream.on("/gen", status=500, json={}) + "?api_key=sk-in-the-query")

    response = complete(api)

    assert response.status_code == 502
    assert "sk-in-the-query" not in response.content.decode()
    assert upstream.url("/gen") in response.json()["msg"]


def test_an_upstream_error_that_quotes_the_api_key_does_not_pass_it_on(api, upstream):
    def echo_key(seen):
        return Reply(status=401, json={"error": f"invalid key {seen.headers['Authorization'].split()[1]}"})

    register(api, upstream.on("/gen", echo_key), headers={"Authorization": "Bearer sk-live-0123456789"})

    response = complete(api)

    assert response.status_code == 502
    assert "sk-live-0123456789" not in response.content.decode()
    assert "invalid key ***" in response.json()["msg"]


def test_an_oversized_upstream_answer_is_cut_off(api, upstream, settings):
    settings.MMM_MAX_RESPONSE_BYTES = 2048
    register(api, upstream.on("/gen", json={"data": "x" * 10_000}), response_extract="data")

    response = complete(api)

    assert response.status_code == 502
    assert "exceeds 2048 bytes" in response.json()["msg"]


def test_unknown_endpoints_answer_json_not_html(api):
    response = api.get("/api/nothing-here")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_found"


def test_a_wrong_method_answers_json(api):
    response = api.get(COMPLETIONS)

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_a_non_json_content_type_is_a_415(api):
    response = api.post(COMPLETIONS, "input=x", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert json.loads(response.content)["code"] == "unsupported_media_type"


def test_a_body_over_the_limit_is_a_413_before_any_upstream_call(api, upstream, settings):
    register(api, upstream.on("/gen", json=SEED_ANSWER))
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = settings.MMM_MAX_REQUEST_BYTES = 4096

    response = complete(api, input="x" * 5000)

    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    assert "4096 bytes" in response.json()["msg"]
    assert upstream.seen == []


def test_a_host_not_allowed_answers_json(api):
    response = api.get("/api/server/workers", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"


def test_a_bug_on_the_request_path_is_a_json_500_without_details(api, upstream):
    # A header value HTTP cannot carry, written past validation as an older release could have.
    Worker.objects.create(
        model_name="proxyllm",
        req_url_template=upstream.on("/gen", json=SEED_ANSWER),
        body={"input": "{USER_PROMPT}"},
        headers={"X-Key": "秘密-sk-0123456789"},
    )

    response = complete(api)

    assert response.status_code == 500
    assert response.json() == {
        "success": False,
        "msg": "internal error; the gateway's log has the details",
        "code": "internal_error",
    }


def test_a_database_outage_is_a_503_not_a_500(api, monkeypatch):
    from django.db import OperationalError

    from inference.routing import routing_table

    def database_down(model_name):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(routing_table, "_loader", database_down)
    monkeypatch.setattr(routing_table, "_by_model", {})  # loaded before the outage

    response = complete(api, model_name="not-in-the-table")

    assert response.status_code == 503
    assert response.json()["code"] == "registry_unavailable"


def test_upstream_connections_are_kept_alive_between_requests(api, upstream):
    register(api, upstream.on("/gen", json=SEED_ANSWER))

    for _ in range(3):
        assert complete(api).status_code == 200

    assert len({seen.client_port for seen in upstream.hits("/gen")}) == 1
