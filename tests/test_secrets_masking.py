"""Upstream error bodies quote what they were sent; the keys in it must not reach clients or logs."""

import pytest

from inference.upstream import UpstreamResponse, mask_secrets, secret_header_values
from registry.models import Worker
from tests.conftest import seed_registration
from tests.fake_upstream import Reply

LONG_KEY = "sk-proj-" + "A1b2C3d4" * 20  # 168 characters, like an OpenAI project key


def test_only_headers_that_carry_credentials_count_as_secrets():
    headers = {"Authorization": "Bearer x", "X-Api-Key": "k", "Content-Type": "application/json", "anthropic-version": "2023-06-01"}
    assert secret_header_values(headers) == ["Bearer x", "k"]


def test_a_key_inside_a_longer_key_is_masked_whole():
    assert mask_secrets("a abcdefgh1234 b", secrets=["abcdefgh", "abcdefgh1234"]) == "a *** b"


@pytest.mark.parametrize("quoted", ['invalid key sk-a/b"c', 'invalid key sk-a\\/b\\"c', "invalid key sk-a%2Fb%22c"])
def test_a_key_is_masked_as_sent_json_escaped_and_percent_encoded(quoted):
    assert mask_secrets(quoted, secrets=['sk-a/b"c']) == "invalid key ***"


def test_the_bearer_token_alone_is_masked_too():
    assert mask_secrets("bad token sk-123456", secrets=["Bearer sk-123456"]) == "bad token ***"


def test_a_long_key_running_across_the_snippets_cut_is_masked():
    body = ("x" * 150 + LONG_KEY + "y" * 100).encode()
    response = UpstreamResponse(status=401, content=body, content_type="text/plain", seconds=0.1)

    snippet = response.snippet(secrets=[LONG_KEY])

    assert LONG_KEY[:12] not in snippet
    assert snippet.startswith("x" * 150 + "***")


def test_nul_bytes_are_dropped_from_snippets():
    response = UpstreamResponse(status=500, content=b"boom\x00binary", content_type="", seconds=0.1)
    assert response.snippet() == "boombinary"


@pytest.mark.django_db
def test_a_long_key_quoted_by_the_upstream_is_in_no_answer_and_no_stored_error(api, upstream):
    url = upstream.on("/gen", lambda seen: Reply(status=401, json={"error": {"message": "Incorrect API key provided: " + seen.headers["Authorization"][7:]}}))
    api.post("/api/server/register", seed_registration(url, headers={"Authorization": f"Bearer {LONG_KEY}"}), format="json")

    completion = api.post("/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json")
    from django.core.management import call_command
    with pytest.raises(SystemExit):
        call_command("probe_workers")
    listing = api.get("/api/server/workers")

    assert completion.status_code == 502
    assert "Incorrect API key provided: ***" in completion.json()["msg"]
    assert LONG_KEY[:16] not in completion.content.decode()
    assert LONG_KEY[:16] not in listing.content.decode()
    assert "Incorrect API key provided: ***" in Worker.objects.get().last_error
