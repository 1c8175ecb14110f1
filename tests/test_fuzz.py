"""Property-based fuzzing of every endpoint: whatever arrives, no answer is a 500, and no
registration leaves a worker half-written (every stored worker passes its own validation)."""

import json
import os
import socket

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from inference import egress
from registry.models import Worker
from tests.conftest import SEED_ANSWER, bearer, seed_registration
from tests.fake_upstream import Reply

pytestmark = pytest.mark.django_db

# 120 cases a test keeps `make test` fast; MMM_FUZZ_EXAMPLES=1000 runs a longer search.
FUZZ = hypothesis_settings(
    max_examples=int(os.environ.get("MMM_FUZZ_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
urls = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda scheme, host, path, query: f"{scheme}://{host}{path}{query}",
        st.sampled_from(["http", "https", "ftp", "HTTP", ""]),
        st.sampled_from(
            ["127.0.0.1:9", "169.254.169.254", "[fe80::1]", "[::1]", "x", "{MODEL_NAME}.example", "", "a b", "h:99999"]
        ),
        st.text(max_size=15),
        st.sampled_from(["", "?key=abc123456", "?p={USER_PROMPT}", "#frag"]),
    ),
)
REGISTER_FIELDS = {
    "model_name": st.text(max_size=20) | json_values,
    "req_url_template": urls | json_values,
    "body": json_values | st.just({"input": "{USER_PROMPT}"}),
    "headers": st.dictionaries(st.text(max_size=10), st.text(max_size=10) | json_values, max_size=3) | json_values,
    "header": st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=2),
    "method": st.sampled_from(["POST", "get", "PUT", "DELETE", ""]) | json_values,
    "req_type": st.sampled_from(["post", "GET"]) | json_values,
    "response_extract": st.sampled_from(["a.b[].c", "a..b", "[0]", ""]) | st.text(max_size=15) | json_values,
    "owner": st.text(max_size=10) | json_values,
    "weight": st.integers(-5, 10**12) | json_values,
    "timeout": st.floats(allow_nan=False, allow_infinity=False) | json_values,
    "enabled": json_values,
    "health_url": urls,
    "req_param": json_values,
    "is_stream": json_values,
    "worker_type": json_values,
}
registrations = st.fixed_dictionaries({}, optional={**REGISTER_FIELDS, "unknown": json_values}) | st.builds(
    lambda over: seed_registration("http://127.0.0.1:9/gen", **over),
    st.fixed_dictionaries({}, optional=REGISTER_FIELDS),
)


@pytest.fixture(autouse=True)
def no_dns(monkeypatch):
    """Made-up host names must not wait on real DNS."""

    def resolve(host, port):
        if egress._literal_address(host) is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)

    monkeypatch.setattr(egress, "getaddrinfo", resolve)


def assert_no_half_written_worker() -> None:
    for worker in Worker.objects.all():
        worker.full_clean(validate_unique=False, validate_constraints=False)


@FUZZ
@given(payload=registrations | json_values)
def test_register_never_answers_500_and_never_half_writes(api, payload):
    before = Worker.objects.count()

    response = api.post("/api/server/register", payload, format="json")

    assert response.status_code in (200, 400), response.content
    assert response.json()["success"] is (response.status_code == 200)
    if response.status_code != 200:
        assert Worker.objects.count() == before
    assert_no_half_written_worker()


@FUZZ
@given(
    payload=st.fixed_dictionaries({}, optional={"model_name": json_values, "req_url_template": urls | json_values})
    | json_values
)
def test_offline_never_answers_500(api, payload):
    response = api.post("/api/server/offline", payload, format="json")

    assert response.status_code in (200, 400, 404), response.content


@FUZZ
@given(
    payload=st.fixed_dictionaries({}, optional={"model_name": json_values, "req_url_template": urls | json_values})
    | json_values
)
def test_heartbeat_never_answers_500(api, payload):
    response = api.post("/api/server/heartbeat", payload, format="json")

    assert response.status_code in (200, 400, 404), response.content


@FUZZ
@given(
    payload=st.fixed_dictionaries(
        {},
        optional={
            "model_name": json_values,
            "strategy": st.sampled_from(["least_loaded", "round_robin", "x"]) | json_values,
            "fallbacks": json_values,
            "max_attempts": json_values,
            "deadline": json_values,
            "per_try_timeout": json_values,
        },
    )
    | json_values
)
def test_policy_changes_never_answer_500_nor_half_write(api, payload):
    from registry.models import RoutingPolicy

    before = list(RoutingPolicy.objects.values())
    response = api.post("/api/server/policy", payload, format="json")

    assert response.status_code in (200, 400), response.content
    if response.status_code != 200:
        assert list(RoutingPolicy.objects.values()) == before


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["model_name", "x"]), st.text(max_size=20), max_size=2))
def test_the_worker_list_never_answers_500(api, params):
    assert api.get("/api/server/workers", params).status_code in (200, 400)


USAGE_PARAMS = ["since", "until", "model", "key", "team", "group_by", "output"]


@FUZZ
@given(params=st.dictionaries(st.sampled_from(USAGE_PARAMS), st.text(max_size=30), max_size=4))
def test_the_usage_report_never_answers_500(api, params):
    response = api.get("/api/usage", params)
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert response.json()["code"] == "invalid"


@FUZZ
@given(
    payload=st.fixed_dictionaries(
        {},
        optional={
            "model_name": st.sampled_from(["proxyllm"]) | json_values,
            "input": json_values,
            "temperature": json_values,
            "model": json_values,
        },
    )
    | json_values
)
def test_completions_never_answer_500(api, upstream, payload):
    if not Worker.objects.exists():
        api.post("/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER)), format="json")

    response = api.post("/api/v1/chat/completions", payload, format="json")

    assert response.status_code in (200, 400, 404), response.content


@FUZZ
@given(
    path=st.sampled_from(["/api/server/register", "/api/server/offline", "/api/v1/chat/completions"]),
    raw=st.binary(max_size=200),
)
def test_bodies_that_are_not_json_are_a_400(api, path, raw):
    assert api.generic("POST", path, raw, content_type="application/json").status_code == 400


@FUZZ
@given(
    path=st.sampled_from(
        ["/api/server/register", "/api/server/workers", "/api/server/offline", "/api/v1/chat/completions"]
    ),
    authorization=st.text(max_size=80) | st.builds(lambda s: "Bearer mmm_" + s, st.text(max_size=60)),
    api_key=st.none() | st.text(max_size=60),
)
def test_any_credentials_are_a_401_never_a_500(api, require_auth, path, authorization, api_key):
    headers = {"HTTP_AUTHORIZATION": authorization}
    if api_key is not None:
        headers["HTTP_X_API_KEY"] = api_key

    assert api.post(path, {}, format="json", **headers).status_code == 401


@FUZZ
@given(payload=registrations)
def test_a_worker_key_registering_anything_never_half_writes(api, make_key, require_auth, payload):
    response = api.post("/api/server/register", payload, format="json", **bearer(make_key("worker")))

    assert response.status_code in (200, 400, 403), response.content
    assert_no_half_written_worker()


OPENAI_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "u",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
}
# Every endpoint that reads a JSON body, both APIs.
JSON_ENDPOINTS = [
    "/api/server/register",
    "/api/server/offline",
    "/api/server/heartbeat",
    "/api/server/policy",
    "/api/server/policy/delete",
    "/api/webhooks",
    "/api/v1/chat/completions",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/images/generations",
    "/v1/videos",
    "/v1/images/jobs",
]
# Strings with a lone surrogate (hypothesis's text() never makes one), as JSON escapes them.
surrogate_texts = st.builds(
    lambda before, code, after: before + chr(code) + after,
    st.text(max_size=5),
    st.integers(0xD800, 0xDFFF),
    st.text(max_size=5),
)
hostile_values = st.recursive(
    scalars | surrogate_texts,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8) | surrogate_texts, inner, max_size=3)
    ),
    max_leaves=8,
)


def nest(value, depth: int, as_objects: bool):
    for _ in range(depth):
        value = {"k": value} if as_objects else [value]
    return value


def hostile_body(fields: dict, depth: int, as_objects: bool, where: str) -> bytes:
    """``fields`` with a value nested ``depth`` levels deep at ``where``, as JSON text (built
    without recursion: json.dumps itself cannot write 20,000 levels)."""
    opening, closing = ('{"k": ', "}") if as_objects else ("[", "]")
    marker = "__nested__"
    text = json.dumps({**fields, where: marker})
    return text.replace(json.dumps(marker), opening * depth + "0" + closing * depth, 1).encode()


@FUZZ
@given(
    path=st.sampled_from(JSON_ENDPOINTS),
    fields=st.fixed_dictionaries(
        {},
        optional={
            "model_name": st.just("proxyllm") | hostile_values,
            "model": st.just("gpt") | hostile_values,
            "input": hostile_values,
            "messages": hostile_values,
            "prompt": hostile_values,
            "req_url_template": urls | hostile_values,
            "body": hostile_values,
        },
    ),
    depth=st.integers(0, 20_000),
    as_objects=st.booleans(),
    where=st.sampled_from(["input", "messages", "body", "extra"]),
)
def test_deep_nesting_and_lone_surrogates_on_every_json_endpoint_are_4xx_json(
    api, registered_everywhere, path, fields, depth, as_objects, where
):
    response = api.generic(
        "POST", path, hostile_body(fields, depth, as_objects, where), content_type="application/json"
    )

    assert 200 <= response.status_code < 500, response.content
    response.json()  # a JSON body, whatever the status
    if depth > 64:
        assert response.status_code == 400


@FUZZ
@given(path=st.sampled_from(JSON_ENDPOINTS), raw=st.binary(max_size=120), at=st.integers(0, 120))
def test_invalid_utf8_anywhere_in_a_body_is_a_400(api, registered_everywhere, path, raw, at):
    body = json.dumps({"model_name": "proxyllm", "model": "gpt", "input": "hi"}).encode()
    at = min(at, len(body))
    body = body[:at] + b"\xff" + raw + body[at:]  # 0xff never occurs in UTF-8

    response = api.generic("POST", path, body, content_type="application/json")

    assert response.status_code == 400, response.content
    assert "not UTF-8" in json.dumps(response.json())


@pytest.fixture
def registered_everywhere(api, upstream):
    """A seed model and an OpenAI-compatible one, so a body that gets through reaches an upstream
    that answers every path in both shapes."""
    upstream.default = lambda seen: Reply(json={**SEED_ANSWER, **OPENAI_ANSWER})
    if not Worker.objects.exists():
        api.post("/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER)), format="json")
        api.post(
            "/api/server/register",
            {
                "model_name": "gpt",
                "preset": "openai",
                "base_url": upstream.url("/v1"),
                "api_key": "sk-x",
                "upstream_model": "u",
            },
            format="json",
        )
