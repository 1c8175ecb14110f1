"""A served request leaves no reference cycle: its objects are freed when its response closes,
not by the garbage collector (mmm.api_view; docs/benchmark.md says what the collector cost)."""

import gc
from collections import Counter

import pytest
from django.http import HttpRequest, HttpResponseBase
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.request import Request
from rest_framework.views import APIView

from mmm.api_view import GatewayAPIView
from mmm.handler import GatewayWSGIHandler
from tests.conftest import SEED_ANSWER, seed_registration
from tests.fake_model_apis import OpenAIServer
from tests.wsgi_calls import call

pytestmark = pytest.mark.django_db

# What a request is made of; none of it may be left for the collector.
REQUEST_PARTS = (HttpRequest, Request, APIView, HttpResponseBase)
PROJECT_APPS = ("mmm", "inference", "console", "accounts", "registry", "usage", "jobs", "webhooks", "response_store")


def collectable_garbage_of(action) -> list:
    """The objects ``action()`` left that only the garbage collector would free."""
    gc.collect()
    gc.disable()
    try:
        action()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds unreachable is kept in gc.garbage
        gc.collect()
        return list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def assert_no_request_left(garbage: list, *, strict: bool = False) -> None:
    """No part of the request among ``garbage`` (``strict``: nothing at all)."""
    parts = garbage if strict else [obj for obj in garbage if isinstance(obj, REQUEST_PARTS)]
    kinds = Counter(f"{type(obj).__module__}.{type(obj).__qualname__}" for obj in garbage)
    assert not parts, f"left for the collector: {dict(kinds.most_common(12))}"


@pytest.fixture
def application():
    return GatewayWSGIHandler()


@pytest.fixture
def registered(api, upstream):
    seed = seed_registration(upstream.on("/gen", json=SEED_ANSWER))
    assert api.post("/api/server/register", seed, format="json").status_code == 200
    base = OpenAIServer().install(upstream)
    chat = {"model_name": "gpt", "preset": "openai", "base_url": base, "upstream_model": "up-model"}
    assert api.post("/api/server/register", chat, format="json").status_code == 200
    for path in ("/down-1", "/down-2"):  # two workers that fail: retried, then a 502
        down = seed_registration(upstream.on(path, status=503, json={"error": "overloaded"}), model_name="down")
        assert api.post("/api/server/register", down, format="json").status_code == 200


CHAT = {"model": "gpt", "messages": [{"role": "user", "content": "hello"}]}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "leaves_nothing"),
    [
        ("POST", "/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, "200 OK", True),
        ("POST", "/api/v1/chat/completions", {"model_name": "nobody", "input": "hi"}, "404 Not Found", True),
        ("POST", "/api/v1/chat/completions", b"{not json", "400 Bad Request", True),
        ("POST", "/api/v1/chat/completions", {"model_name": "down", "input": "hi"}, "502 Bad Gateway", True),
        ("POST", "/v1/chat/completions", CHAT, "200 OK", True),
        ("POST", "/v1/chat/completions", {**CHAT, "stream": True}, "200 OK", True),
        ("POST", "/v1/messages", {"model": "gpt", "max_tokens": 16, "messages": CHAT["messages"]}, "200 OK", True),
        # A DRF serializer's fields and their parent refer to each other: that cycle stays.
        ("GET", "/api/server/workers", None, "200 OK", False),
    ],
)
def test_a_served_request_is_freed_when_its_response_closes(
    registered, application, method, path, body, status, leaves_nothing
):
    call(application, method, path, body)  # the first call of a path builds what is kept (the URL match)
    answers = []

    garbage = collectable_garbage_of(lambda: answers.append(call(application, method, path, body)))

    assert answers[0][0] == status, answers[0]
    assert_no_request_left(garbage, strict=leaves_nothing)


def test_the_check_sees_a_request_left_in_a_cycle(application, registered, monkeypatch):
    """Without GatewayAPIView's release the view and its request are the collector's again."""
    monkeypatch.setattr(GatewayAPIView, "_let_go", lambda self: None)
    garbage = collectable_garbage_of(
        lambda: call(application, "POST", "/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"})
    )

    with pytest.raises(AssertionError, match="left for the collector"):
        assert_no_request_left(garbage)


def _views(patterns):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _views(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            view_class = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
            if view_class is not None:
                yield pattern, view_class


def test_every_api_view_of_the_gateway_lets_its_request_go():
    api_views = [
        (str(pattern.pattern), view_class)
        for pattern, view_class in _views(get_resolver().url_patterns)
        if issubclass(view_class, APIView) and view_class.__module__.split(".")[0] in PROJECT_APPS
    ]
    assert len(api_views) > 10  # the walk found the API
    assert [(path, view) for path, view in api_views if not issubclass(view, GatewayAPIView)] == []
