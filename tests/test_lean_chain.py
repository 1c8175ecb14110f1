"""The completion endpoints' short middleware chain (mmm.handler) answers as the full one does.

Each case is sent through the WSGI application twice: without cookies (the lean chain) and with
a cookie that is not the session's (the full chain, whose session, user and messages layers
still step aside), and the two answers must match in status, headers and body.
"""

import json

import pytest
from django.core import signals
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections

from console.models import RequestLog
from console.request_log import request_log_writer
from mmm.handler import GatewayWSGIHandler, takes_lean_chain
from tests.conftest import SEED_ANSWER, seed_registration
from tests.wsgi_calls import call, factory

pytestmark = pytest.mark.django_db


@pytest.fixture
def application():
    return _counting(GatewayWSGIHandler())


def _counting(app: GatewayWSGIHandler) -> GatewayWSGIHandler:
    calls = {"lean": 0}
    lean_chain = app._lean_chain

    def counted(request):
        calls["lean"] += 1
        return lean_chain(request)

    app._lean_chain = counted
    app.lean_calls = calls
    return app


def both_chains(app, method, path, body=None):
    before = app.lean_calls["lean"]
    lean = call(app, method, path, body)
    assert app.lean_calls["lean"] == before + 1, f"{path} did not take the lean chain"
    full = call(app, method, path, body, cookie="theme=dark")
    assert app.lean_calls["lean"] == before + 1, f"{path} with a cookie took the lean chain"
    return lean, full


def test_a_seed_completion_gets_the_same_answer_and_headers(api, upstream, application):
    registered = api.post(
        "/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER)), format="json"
    )
    assert registered.status_code == 200

    lean, full = both_chains(application, "POST", "/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"})

    assert lean == full
    status, headers, content = lean
    assert status == "200 OK"
    assert json.loads(content) == {"success": True, "msg": "execute succeed", "result": "I am a fake model."}
    # What SecurityMiddleware and XFrameOptionsMiddleware add is there on the lean chain.
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Referrer-Policy" in headers


def test_both_are_logged_with_their_request_ids(api, upstream, application):
    registered = api.post(
        "/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER)), format="json"
    )
    assert registered.status_code == 200
    request_log_writer.discard()

    both_chains(application, "POST", "/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"})
    request_log_writer.flush()

    rows = list(RequestLog.objects.order_by("id").values("model_name", "status", "request_id"))
    assert [(row["model_name"], row["status"]) for row in rows] == [("proxyllm", 200), ("proxyllm", 200)]
    assert all(row["request_id"] for row in rows) and rows[0]["request_id"] != rows[1]["request_id"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/chat/completions", {"model_name": "nobody", "input": "hi"}),  # no such model
        ("POST", "/api/v1/chat/completions", {"model_name": 42}),  # invalid input
        ("POST", "/api/v1/chat/completions", b"{not json"),
        ("GET", "/api/v1/chat/completions", None),  # method not allowed
        ("POST", "/v1/chat/completions", {"model": "nobody", "messages": [{"role": "user", "content": "x"}]}),
        ("POST", "/v1/chat/completions", {"model": "m", "messages": []}),
        ("POST", "/v1/embeddings", {"model": "nobody", "input": "x"}),
        ("POST", "/v1/messages", {"model": "nobody"}),
        ("POST", "/v1/responses", {"model": "nobody", "input": "x"}),
    ],
)
def test_errors_are_the_same(application, method, path, body):
    lean, full = both_chains(application, method, path, body)
    assert lean == full
    assert int(lean[0].split()[0]) >= 400
    assert json.loads(lean[2])  # a JSON error body, not an HTML page


def test_a_stream_is_relayed_and_logged_alike(api, upstream, application):
    from tests.fake_model_apis import OpenAIServer

    base = OpenAIServer().install(upstream)
    registration = {"model_name": "gpt", "preset": "openai", "base_url": base, "upstream_model": "up-model"}
    assert api.post("/api/server/register", registration, format="json").status_code == 200
    request_log_writer.discard()
    body = {"model": "gpt", "messages": [{"role": "user", "content": "hello"}], "stream": True}

    lean, full = both_chains(application, "POST", "/v1/chat/completions", body)

    assert lean[0] == full[0] == "200 OK"
    assert lean[1] == full[1]
    assert lean[2].endswith(b"data: [DONE]\n\n") and full[2].endswith(b"data: [DONE]\n\n")
    request_log_writer.flush()
    assert list(RequestLog.objects.values_list("stream", "status")) == [(True, 200), (True, 200)]


@pytest.mark.parametrize(
    ("path", "cookie", "lean"),
    [
        ("/v1/chat/completions", "", True),
        ("/v1/chat/completions", "sessionid=abc", False),
        ("/v1/models", "", False),  # not a completion endpoint
        ("/v1/chat/completions/", "", False),  # not one of the exact paths
        ("/admin/", "", False),
    ],
)
def test_which_requests_take_it(path, cookie, lean):
    request = factory.post(path, HTTP_COOKIE=cookie)
    assert takes_lean_chain(request) is lean


class StampMiddleware:
    """A layer an operator or an instrumentation adds (OpenTelemetry's puts its own first)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response["X-Stamp"] = "stamped"
        return response


class UnusedMiddleware:
    def __init__(self, get_response):
        from django.core.exceptions import MiddlewareNotUsed

        raise MiddlewareNotUsed


def test_a_layer_added_to_middleware_is_in_the_lean_chain_too(settings):
    settings.MIDDLEWARE = [
        "tests.test_lean_chain.StampMiddleware",
        "tests.test_lean_chain.UnusedMiddleware",
        *settings.MIDDLEWARE,
    ]
    app = GatewayWSGIHandler()

    lean = call(app, "POST", "/v1/chat/completions", {"model": "nobody", "messages": []})
    full = call(app, "POST", "/v1/chat/completions", {"model": "nobody", "messages": []}, cookie="a=b")

    assert lean[1]["X-Stamp"] == full[1]["X-Stamp"] == "stamped"
    assert lean == full


def test_it_refuses_async_only_middleware(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.test_lean_chain.AsyncOnlyMiddleware"]
    with pytest.raises(ImproperlyConfigured):
        GatewayWSGIHandler()


class AsyncOnlyMiddleware:
    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response


def test_a_response_whose_head_the_server_refuses_is_still_finished(application, caplog):
    """gunicorn raises from start_response on a header it finds invalid, and then has no
    response to close: the handler closes it, so its log line (and row, usage, metrics) is made."""
    import logging

    caplog.set_level(logging.INFO)
    request = factory.get("/api/server/workers")

    def refusing_start_response(status, headers):
        raise ValueError("invalid header")

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        with pytest.raises(ValueError, match="invalid header"):
            application(request.environ, refusing_start_response)
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    lines = [r.getMessage() for r in caplog.records if r.name == "mmm.request"]
    assert any("path=/api/server/workers" in line for line in lines), lines
    assert "mmm.response" not in request.environ  # no reference kept past the request


def test_a_lean_request_reverses_urls_as_the_full_chain_does(application):
    from django.urls import get_urlconf, reverse

    seen = []
    lean_chain = application._lean_chain

    def noting(request):
        # The lean chain sets no URLconf; reverse() falls back to ROOT_URLCONF.
        seen.append((get_urlconf(), reverse("openapi-schema")))
        return lean_chain(request)

    application._lean_chain = noting
    call(application, "POST", "/v1/chat/completions", {"model": "nobody-serves-this", "messages": []})
    assert seen == [(None, "/api/schema/")]
    assert get_urlconf() is None  # nothing left set for the thread's next request
