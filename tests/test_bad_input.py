"""Whatever bytes a client sends, the answer is a 4xx with a JSON body saying what is wrong and
where: deep nesting, lone surrogates, undecodable bytes, CSRF failures on API paths."""

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.conftest import SEED_ANSWER, seed_registration

pytestmark = pytest.mark.django_db

# Every endpoint that reads a JSON body.
JSON_ENDPOINTS = [
    "/api/server/register",
    "/api/server/offline",
    "/api/server/heartbeat",
    "/api/server/policy",
    "/api/server/policy/delete",
    "/api/v1/chat/completions",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/images/generations",
]


@pytest.fixture
def registered(api, upstream):
    """A model behind each API, so a body that got through would reach a worker."""
    api.post(
        "/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER), model_name="m"), format="json"
    )
    preset = {
        "model_name": "gpt",
        "preset": "openai",
        "base_url": upstream.url("/v1"),
        "api_key": "sk-x",
        "upstream_model": "u",
    }
    api.post("/api/server/register", preset, format="json")


def post_raw(api, path: str, raw: bytes):
    return api.generic("POST", path, raw, content_type="application/json")


def message_of(response) -> str:
    body = response.json()
    return body["error"]["message"] if "error" in body else body["msg"]


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_json_nested_ten_thousand_deep_is_a_400(api, registered, path):
    response = post_raw(api, path, b"[" * 10_000 + b"]" * 10_000)

    assert response.status_code == 400
    assert "nested deeper than 64 levels" in message_of(response)


@pytest.mark.parametrize("path", ["/api/server/register", "/api/v1/chat/completions", "/v1/chat/completions"])
def test_nesting_the_scanner_accepts_but_the_gateway_does_not_is_a_400_naming_where(api, registered, path):
    # 500 levels parse without a RecursionError; everything that walks the body later might not.
    deep = {"model_name": "m", "model": "gpt", "input": "hi", "messages": [{"role": "user", "content": "hi"}]}
    deep["extra"] = json.loads("[" * 500 + "]" * 500)

    response = post_raw(api, path, json.dumps(deep).encode())

    assert response.status_code == 400
    assert "nested deeper than 64 levels at $.extra" in message_of(response)


def test_a_body_nested_as_deep_as_real_requests_go_is_accepted(api, upstream):
    body = {"input": "{USER_PROMPT}"}
    for level in range(30):
        body = {"level": level, "inner": body}
    registration = seed_registration(upstream.on("/gen", json=SEED_ANSWER), body=body)

    assert api.post("/api/server/register", registration, format="json").status_code == 200


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_a_lone_surrogate_anywhere_in_a_body_is_a_400_naming_where(api, registered, path):
    raw = b'{"model_name": "m", "model": "gpt", "input": "hi", "messages": [{"role": "user", "content": "a\\ud800b"}]}'

    response = post_raw(api, path, raw)

    assert response.status_code == 400
    assert "lone surrogate \\ud800 in the string at $.messages[0].content" in message_of(response)


def test_a_lone_surrogate_in_a_v1_message_is_an_openai_shaped_400(api, registered):
    raw = b'{"model": "gpt", "messages": [{"role": "user", "content": "\\udfff"}]}'

    response = post_raw(api, "/v1/chat/completions", raw)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["code"] == "parse_error"


def test_a_lone_surrogate_in_a_key_is_a_400(api, registered):
    response = post_raw(api, "/api/v1/chat/completions", b'{"model_name": "m", "input": "hi", "\\ud83d": 1}')

    assert response.status_code == 400
    assert "lone surrogate \\ud83d in the string at $ (a key)" in message_of(response)


def test_a_surrogate_pair_is_a_character_and_goes_through(api, registered, upstream):
    response = post_raw(api, "/api/v1/chat/completions", b'{"model_name": "m", "input": "smile \\ud83d\\ude00"}')

    assert response.status_code == 200
    assert upstream.hits("/gen")[-1].json["input"] == "smile \U0001f600"


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
@pytest.mark.parametrize("raw", [b'{"input": "caf\xe9"}', b'{"input": "\xed\xa0\x80"}', b"\xff\xfe{}"])
def test_bytes_that_are_not_utf8_are_a_400_naming_the_offset(api, registered, path, raw):
    response = post_raw(api, path, raw)

    assert response.status_code == 400
    offset = next(index for index in range(len(raw)) if raw[index] >= 0x80)
    assert f"the body is not UTF-8: byte 0x{raw[offset]:02x} at offset {offset}" in message_of(response)


def test_a_query_string_that_is_not_utf8_is_not_a_500(api, registered):
    response = api.get("/api/server/workers?model_name=%ff%ed%a0%80")

    assert response.status_code == 200
    assert response.json()["data"] == []


@pytest.fixture
def staff_browser(db):
    """A browser with a staff session that does CSRF as browsers do: only with the token."""
    User.objects.create_superuser("ops", "ops@example.com", "pw")
    browser = Client(enforce_csrf_checks=True)
    browser.login(username="ops", password="pw")
    return browser


@pytest.mark.parametrize("path", ["/api/server/anything", "/v1/anything", "/healthz"])
def test_a_csrf_failure_on_an_api_path_is_json(settings, path):
    # Every API view is a DRF view or csrf_exempt today, so no API request reaches the CSRF
    # check; the failure view is what answers one that someday does.
    from django.test import RequestFactory
    from django.utils.module_loading import import_string

    failure_view = import_string(settings.CSRF_FAILURE_VIEW)
    response = failure_view(RequestFactory().post(path), reason="CSRF token missing.")

    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    if path.startswith("/v1/"):
        assert body["error"]["code"] == "csrf_failed" and "CSRF" in body["error"]["message"]
    else:
        assert body["code"] == "csrf_failed" and "CSRF" in body["msg"]


def test_a_csrf_failure_in_the_admin_is_djangos_page(settings):
    from django.test import RequestFactory
    from django.utils.module_loading import import_string

    response = import_string(settings.CSRF_FAILURE_VIEW)(RequestFactory().post("/admin/login/"), reason="x")

    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


def test_the_health_endpoints_refuse_a_browser_post_as_405_not_a_csrf_page(staff_browser):
    response = staff_browser.post("/healthz", {})

    assert response.status_code == 405


def test_a_session_post_without_the_token_to_a_drf_endpoint_is_json(staff_browser, upstream):
    response = staff_browser.post(
        "/api/server/register", seed_registration(upstream.url("/gen")), content_type="application/json"
    )

    assert response.status_code == 403
    assert response.json()["success"] is False
    assert "CSRF" in response.json()["msg"]


def test_a_csrf_failure_in_the_admin_is_still_djangos_page(staff_browser):
    response = staff_browser.post("/admin/registry/worker/add/", {})

    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")
