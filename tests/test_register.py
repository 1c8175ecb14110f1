import pytest

from registry.models import HealthState, Worker
from tests.conftest import seed_registration

pytestmark = pytest.mark.django_db

REGISTER = "/api/server/register"


def test_it_registers_the_seed_example_with_the_seed_answer(api):
    response = api.post(REGISTER, seed_registration("http://127.0.0.1/api/generate"), format="json")

    assert response.status_code == 200
    assert response.json() == {"success": True, "msg": "register LLM proxyllm succeed!"}
    worker = Worker.objects.get()
    assert worker.model_name == "proxyllm"
    assert worker.body == {"input": "{USER_PROMPT}", "model_name": "{MODEL_NAME}"}
    assert worker.response_extract == "data.items[].attributes.answer"
    assert worker.owner == "xuyuan23"
    assert (worker.method, worker.weight, worker.enabled) == ("POST", 1, True)
    assert worker.health_state == HealthState.UNKNOWN


def test_registering_the_same_worker_again_updates_it_in_place(api):
    api.post(REGISTER, seed_registration("http://127.0.0.1/api/generate"), format="json")
    response = api.post(
        REGISTER, seed_registration("http://127.0.0.1/api/generate", weight=5, owner="team-b"), format="json"
    )

    assert response.json() == {"success": True, "msg": "register LLM proxyllm succeed!"}
    worker = Worker.objects.get()
    assert (worker.weight, worker.owner) == (5, "team-b")


def test_a_re_registration_keeps_fields_it_does_not_send(api):
    api.post(REGISTER, seed_registration("http://127.0.0.1/x", weight=3, timeout=7), format="json")
    api.post(REGISTER, seed_registration("http://127.0.0.1/x", owner="other"), format="json")

    worker = Worker.objects.get()
    assert (worker.weight, worker.timeout, worker.owner) == (3, 7, "other")


def test_a_re_registration_does_not_reset_health(api):
    api.post(REGISTER, seed_registration("http://127.0.0.1/x"), format="json")
    Worker.objects.update(health_state=HealthState.UNHEALTHY, consecutive_failures=4, last_error="boom")
    api.post(REGISTER, seed_registration("http://127.0.0.1/x", weight=2), format="json")

    worker = Worker.objects.get()
    assert (worker.health_state, worker.consecutive_failures, worker.last_error) == ("unhealthy", 4, "boom")


def test_it_accepts_the_first_implementations_field_names(api):
    payload = seed_registration(
        "http://127.0.0.1/x",
        req_type="put",
        header={"X-Team": "a"},
        req_param={"k": 1},
        is_stream=False,
        worker_type="llm",
    )
    response = api.post(REGISTER, payload, format="json")

    assert response.status_code == 200, response.json()
    worker = Worker.objects.get()
    assert worker.method == "PUT"
    assert worker.headers == {"X-Team": "a"}
    assert worker.legacy_options == {"req_param": {"k": 1}, "is_stream": False, "worker_type": "llm"}


def test_a_get_worker_may_carry_the_prompt_in_its_url_and_omit_the_body(api):
    payload = {
        "model_name": "search",
        "req_url_template": "http://127.0.0.1/q?text={USER_PROMPT}&m={MODEL_NAME}",
        "method": "GET",
    }
    response = api.post(REGISTER, payload, format="json")

    assert response.status_code == 200, response.json()
    assert Worker.objects.get().body is None


def test_two_urls_under_one_name_are_two_workers(api):
    api.post(REGISTER, seed_registration("http://127.0.0.1:9001/x"), format="json")
    api.post(REGISTER, seed_registration("http://127.0.0.1:9002/x"), format="json")

    assert Worker.objects.filter(model_name="proxyllm").count() == 2


def test_a_trailing_slash_is_accepted(api):
    response = api.post(REGISTER + "/", seed_registration("http://127.0.0.1/x"), format="json")
    assert response.status_code == 200


@pytest.mark.parametrize(
    "override, field, says",
    [
        ({"model_name": ""}, "model_name", "blank"),
        ({"model_name": "m" * 201}, "model_name", "200"),
        ({"model_name": 42}, "model_name", "must be a string"),
        ({"req_url_template": "ftp://host/x"}, "req_url_template", "http"),
        ({"req_url_template": "/relative/path"}, "req_url_template", "http"),
        ({"req_url_template": "http:///no-host"}, "req_url_template", "host"),
        ({"req_url_template": "http://host:port/x"}, "req_url_template", "not a valid URL"),
        ({"body": "a string"}, "body", "object or array"),
        ({"body": {"input": "no placeholder"}}, "body", "{USER_PROMPT}"),
        ({"response_extract": "data..answer"}, "response_extract", "empty"),
        ({"response_extract": "data.items[x]"}, "response_extract", "segment 2"),
        ({"method": "DELETE"}, "method", "POST, GET, PUT"),
        ({"weight": -1}, "weight", "at least 0"),
        ({"weight": 1.5}, "weight", "whole number"),
        ({"timeout": 0}, "timeout", "at least"),
        ({"timeout": "10"}, "timeout", "must be a number"),
        ({"enabled": "yes"}, "enabled", "true or false"),
        ({"headers": {"Bad Header": "x"}}, "headers", "not a valid header name"),
        ({"headers": {"X-A": "line\r\nbreak"}}, "headers", "line breaks"),
        ({"headers": ["not", "an", "object"]}, "headers", "dictionary"),
        ({"headers": {"X-Key": "秘密-sk"}}, "headers", "ISO-8859-1"),
        ({"headers": {"X-Key": "a\x00b"}}, "headers", "Null characters"),
        ({"body": {"input": "{USER_PROMPT}", "stop": ["\x00"]}}, "body", "NUL"),
        ({"req_param": {"k": "\x00"}}, "legacy_options", "NUL"),
        ({"headers": {"Authorization": " Bearer sk-x"}}, "headers", "white space"),
        ({"health_url": "localhost/health"}, "health_url", "http"),
        ({"req_type": "GET", "method": "POST"}, "req_type", "conflicts"),
        ({"max_tokens": 5}, "max_tokens", "not a known field"),
    ],
)
def test_it_refuses_bad_registrations_naming_the_field_and_writes_nothing(api, override, field, says):
    response = api.post(REGISTER, seed_registration("http://127.0.0.1/x", **override), format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert body["code"] == "invalid"
    assert field in body["errors"], body
    assert says in str(body["errors"][field]), body
    assert field in body["msg"]
    assert not Worker.objects.exists()


def test_a_refused_update_leaves_the_worker_as_it_was(api):
    api.post(REGISTER, seed_registration("http://127.0.0.1/x", weight=2), format="json")
    response = api.post(
        REGISTER, seed_registration("http://127.0.0.1/x", weight=9, response_extract="a..b"), format="json"
    )

    assert response.status_code == 400
    assert Worker.objects.get().weight == 2


def test_a_post_worker_needs_a_body(api):
    payload = {"model_name": "m", "req_url_template": "http://127.0.0.1/x?p={USER_PROMPT}"}
    response = api.post(REGISTER, payload, format="json")

    assert response.status_code == 400
    assert "only GET may omit it" in response.json()["errors"]["body"][0]


def test_malformed_json_is_a_400_that_says_so(api):
    response = api.post(REGISTER, '{"model_name": "x",', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert "JSON parse error" in response.json()["msg"]


def test_a_json_array_instead_of_an_object_is_a_400(api):
    response = api.post(REGISTER, [1, 2], format="json")

    assert response.status_code == 400
    assert response.json()["success"] is False
