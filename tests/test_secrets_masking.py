"""Upstream error bodies quote what they were sent; the keys in it must not reach clients or logs."""

import pytest

from inference import redaction
from inference.redaction import mask_secrets, secret_header_values
from inference.upstream import UpstreamResponse
from registry.models import Worker
from tests.conftest import seed_registration
from tests.fake_upstream import Reply

LONG_KEY = "sk-proj-" + "A1b2C3d4" * 20  # 168 characters, like an OpenAI project key


def test_only_headers_that_carry_credentials_count_as_secrets():
    headers = {
        "Authorization": "Bearer x",
        "X-Api-Key": "k",
        "Content-Type": "application/json",
        "anthropic-version": "2023-06-01",
    }
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
    url = upstream.on(
        "/gen",
        lambda seen: Reply(
            status=401, json={"error": {"message": "Incorrect API key provided: " + seen.headers["Authorization"][7:]}}
        ),
    )
    api.post(
        "/api/server/register", seed_registration(url, headers={"Authorization": f"Bearer {LONG_KEY}"}), format="json"
    )

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


def test_one_rule_says_which_header_and_body_names_carry_credentials():
    for name in (
        "Authorization",
        "X-Api-Key",
        "api_key",
        "access_token",
        "client_secret",
        "password",
        "passwd",
        "sig",
        "code",
    ):
        assert redaction.is_secret_name(name), name
    for name in ("Content-Type", "anthropic-version", "input", "model", "temperature", "region"):
        assert not redaction.is_secret_name(name), name
    headers = {"X-Secret-Thing": "v1v1v1", "Accept": "x"}
    assert secret_header_values(headers) == ["v1v1v1"]
    assert redaction.secret_values(headers={}, url="", body={"X-Secret-Thing": "v1v1v1"}) == ["v1v1v1"]


@pytest.mark.parametrize(
    "url, shown",
    [
        ("http://u:pw@h:1/p?key=abc&prompt={USER_PROMPT}&x=", "http://***@h:1/p?key=***&prompt={USER_PROMPT}&x="),
        ("https://TOKEN@h/p", "https://***@h/p"),
        ("http://{MODEL_NAME}.svc/p?a=1&a=2", "http://{MODEL_NAME}.svc/p?a=***&a=***"),
        ("http://h/p", "http://h/p"),
    ],
)
def test_a_url_is_shown_masked_and_a_masked_url_sent_back_gets_its_secrets_back(url, shown):
    assert redaction.url_for_display(url) == shown
    assert redaction.url_unmasked(shown, url) == url


def test_a_masked_url_edited_keeps_the_masked_parts_and_takes_the_edits():
    stored = "http://u:pw@h/p?a=1&key=k1&a=2"

    edited = redaction.url_unmasked("http://***@other/p?a=***&key=new&a=***&b=***", stored)

    assert edited == "http://u:pw@other/p?a=1&key=new&a=2&b=***"  # b had no stored value: kept as typed


def test_a_masked_body_sent_back_gets_its_credentials_back_by_place():
    stored = {
        "input": "{USER_PROMPT}",
        "auth": {"api_key": "k1", "user": "me"},
        "list": [{"token": "t1"}, {"token": "t2"}],
    }
    shown = redaction.body_for_display(stored)
    assert shown == {
        "input": "{USER_PROMPT}",
        "auth": {"api_key": "***", "user": "me"},
        "list": [{"token": "***"}, {"token": "***"}],
    }

    assert redaction.body_unmasked(shown, stored) == stored
    edited = {**shown, "list": [{"token": "new"}, {"token": "***"}], "extra": {"secret": "***"}}
    assert redaction.body_unmasked(edited, stored)["list"] == [{"token": "new"}, {"token": "t2"}]
    assert redaction.body_unmasked(edited, stored)["extra"] == {"secret": "***"}


def test_the_request_path_and_the_registry_mask_with_the_same_module():
    from inference import upstream
    from inference.protocols import base
    from registry import serializers

    assert upstream.mask_secrets is redaction.mask_secrets
    assert base.redaction is redaction
    assert serializers.url_for_display is redaction.url_for_display
