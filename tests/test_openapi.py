"""The OpenAPI document: served, complete, and the same as the committed docs/openapi.yaml."""

import re
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver

COMMITTED = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
# The admin is HTML for people; the document's own pages describe nothing.
UNDOCUMENTED = re.compile(r"^/(admin/|api/schema/|api/docs/|api/redoc/)")


def generated(tmp_path) -> str:
    out = tmp_path / "openapi.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    return out.read_text()


def _routes(patterns, prefix=""):
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            yield route


def _as_openapi_path(route: str) -> str:
    """``api/server/^register/?$`` -> ``/api/server/register``; ``models/<str:id>`` -> ``/models/{id}``."""
    path = route.replace("^", "").replace("$", "").replace("/?", "")
    path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", path)
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", path)
    return "/" + path


def test_the_committed_document_is_the_one_the_code_generates(tmp_path):
    assert COMMITTED.read_text() == generated(tmp_path), (
        "docs/openapi.yaml differs from what the code describes: run `make openapi` and commit the result"
    )


def test_every_url_the_gateway_answers_is_in_the_document(tmp_path):
    document = yaml.safe_load(generated(tmp_path))
    routes = {_as_openapi_path(route) for route in _routes(get_resolver().url_patterns)}
    expected = {path for path in routes if not UNDOCUMENTED.match(path)}
    assert expected - set(document["paths"]) == set(), "describe these in mmm/openapi/"
    assert set(document["paths"]) - expected == set(), "the document names paths the gateway does not answer"


def test_every_operation_has_its_answer_errors_and_auth(tmp_path):
    document = yaml.safe_load(generated(tmp_path))
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            success = [status for status in operation["responses"] if status.startswith("2")]
            assert success, f"{where} has no success answer: add it to mmm/openapi/views.py"
            assert all("content" in operation["responses"][status] for status in success), where
            if path.startswith(("/api/", "/v1/")):
                assert {"401", "403", "429"} <= set(operation["responses"]), f"{where} lacks its error answers"
                assert {"bearerAuth": []} in operation["security"], f"{where} does not say it takes a key"


@pytest.mark.django_db
def test_the_schema_and_its_reader_are_served_without_a_key(client, settings):
    settings.MMM_REQUIRE_AUTH = True
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert "/api/server/register" in schema.json()["paths"]
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    # Nothing from another host: the page works with no internet.
    assert not re.search(r"""(src|href)=["']https?://""", html), html
    assert client.get("/api/redoc/").status_code == 200
