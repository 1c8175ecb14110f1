"""The upstream client (urllib3's pools): what an upstream receives, as it did through requests."""

import pytest

from inference import upstream as upstream_module
from tests.conftest import SEED_ANSWER, seed_registration

pytestmark = pytest.mark.django_db


def test_an_upstream_gets_the_default_headers_and_the_workers_own_win(api, upstream):
    url = upstream.on("/gen", json=SEED_ANSWER)
    headers = {"accept": "application/x-ndjson", "X-Team": "a"}
    assert api.post("/api/server/register", seed_registration(url, headers=headers), format="json").status_code == 200

    answer = api.post("/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json")

    assert answer.status_code == 200
    seen = {name.lower(): value for name, value in upstream.hits("/gen")[0].headers.items()}
    assert seen["accept"] == "application/x-ndjson"  # one Accept: the worker's, whatever its case
    assert seen["x-team"] == "a" and seen["content-type"] == "application/json"
    assert seen["user-agent"] == upstream_module.DEFAULT_HEADERS["User-Agent"]
    assert seen["accept-encoding"] == upstream_module.DEFAULT_HEADERS["Accept-Encoding"]


def test_the_request_id_and_json_type_are_added_unless_the_worker_sends_its_own(api, upstream):
    url = upstream.on("/gen", json=SEED_ANSWER)
    assert api.post("/api/server/register", seed_registration(url), format="json").status_code == 200
    answer = api.post(
        "/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json", HTTP_X_REQUEST_ID="r-1"
    )
    assert answer.status_code == 200
    sent = upstream.hits("/gen")[0].headers
    assert sent.get("X-Request-ID") == "r-1" and sent.get("Content-Type") == "application/json"

    own = {"x-request-id": "the-workers", "content-type": "application/json; charset=utf-8"}
    url = upstream.on("/own", json=SEED_ANSWER)
    registration = seed_registration(url, headers=own, model_name="own-headers")
    assert api.post("/api/server/register", registration, format="json").status_code == 200
    answer = api.post(
        "/api/v1/chat/completions", {"model_name": "own-headers", "input": "hi"}, format="json", HTTP_X_REQUEST_ID="r-2"
    )
    assert answer.status_code == 200
    sent = [(name.lower(), value) for name, value in upstream.hits("/own")[0].headers.items()]
    assert [value for name, value in sent if name == "x-request-id"] == ["the-workers"]
    assert [value for name, value in sent if name == "content-type"] == ["application/json; charset=utf-8"]


def test_the_default_headers_are_the_ones_requests_sends():
    # Spelled out in inference.upstream so a worker need not import requests for them.
    import requests.utils

    assert dict(requests.utils.default_headers()) == upstream_module.DEFAULT_HEADERS


def test_a_redirect_is_an_answer_and_is_not_followed(upstream):
    target = upstream.on("/elsewhere", json=SEED_ANSWER)
    url = upstream.on("/gen", status=302, json={}, headers={"Location": target})

    answer = upstream_module.send(upstream_module.UpstreamRequest("POST", url, json_body={}), timeout=5)

    assert answer.status == 302
    assert upstream.hits("/elsewhere") == []
