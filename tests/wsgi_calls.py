"""One request through a WSGI application in the test's own thread, as a server sends it."""

import json

from django.core import signals
from django.db import close_old_connections
from django.test import RequestFactory

factory = RequestFactory()


def call(app, method: str, path: str, body=None, *, cookie: str = "") -> tuple[str, dict, bytes]:
    """(status line, headers without X-Request-ID, body) of ``app``'s answer, its response closed."""
    extra = {"HTTP_COOKIE": cookie}
    if body is None:
        request = factory.generic(method, path, **extra)
    else:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = factory.generic(method, path, raw, content_type="application/json", **extra)
    started = {}

    def start_response(status, headers):
        started.update(status=status, headers=headers)

    # As Django's test client does, the request signals leave the test's database connection open
    # (it holds the test's transaction; PostgreSQL's would be closed under it). Around each call:
    # the test client connects them again after each of its own.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        answer = app(request.environ, start_response)
        try:
            content = b"".join(answer)
        finally:
            answer.close()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    headers = {name: value for name, value in started["headers"] if name != "X-Request-ID"}
    return started["status"], headers, content
