"""/api/webhooks: an admin key registers, lists, shows and removes keys' webhook endpoints."""

import pytest

from accounts.services import api_key_create
from tests.conftest import bearer
from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_key(require_auth, make_key) -> dict:
    return bearer(make_key("admin", name="operator"))


@pytest.fixture
def client_key():
    return api_key_create(name="video app", scopes=["inference"])[0]


def create(api, admin_key, **fields):
    return api.post("/api/webhooks", fields, format="json", **admin_key)


def test_an_admin_registers_an_endpoint_and_gets_its_secret_once(api, admin_key, client_key):
    url = "http://127.0.0.1:9/hook?token=tok-abc123"
    created = create(api, admin_key, api_key=client_key.prefix, url=url, event_types=["video.*"])

    assert created.status_code == 201 and created["Cache-Control"] == "no-store"
    data = created.json()["data"]
    endpoint = WebhookEndpoint.objects.get()
    assert data["secret"] == endpoint.secret and data["secret"].startswith("whsec_")
    assert data["url"] == "http://127.0.0.1:9/hook?token=***" and endpoint.url == url
    assert (data["api_key"], data["event_types"], data["enabled"]) == (client_key.prefix, ["video.*"], True)

    for answer in (api.get("/api/webhooks", **admin_key), api.get(f"/api/webhooks/{endpoint.pk}", **admin_key)):
        assert answer.status_code == 200
        assert endpoint.secret not in answer.content.decode() and "tok-abc123" not in answer.content.decode()
    assert api.get("/api/webhooks", **admin_key).json()["data"][0]["id"] == endpoint.pk
    assert api.get("/api/webhooks", {"api_key": "nomatch1"}, **admin_key).json()["data"] == []


def test_an_admin_deletes_an_endpoint(api, admin_key, client_key):
    endpoint_id = create(api, admin_key, api_key=client_key.prefix, url="http://127.0.0.1:9/h").json()["data"]["id"]
    deleted = api.delete(f"/api/webhooks/{endpoint_id}", **admin_key)
    assert deleted.status_code == 200 and not WebhookEndpoint.objects.exists()
    missing = api.delete(f"/api/webhooks/{endpoint_id}", **admin_key)
    assert missing.status_code == 404 and missing.json()["code"] == "webhook_not_found"
    assert api.get("/api/webhooks/" + "9" * 30, **admin_key).status_code == 404


@pytest.mark.parametrize(
    "fields, field, says",
    [
        ({"url": "http://169.254.169.254/latest/"}, "url", "cloud metadata address"),
        ({"url": "ftp://example.com/"}, "url", "http"),
        ({"api_key": "nokey123"}, "api_key", "no API key has this prefix"),
        ({"event_types": "video.*"}, "event_types", "list"),
        ({"secret": "whsec_mine"}, "secret", "is not a known field"),
    ],
)
def test_a_bad_registration_is_a_400_naming_the_field(api, admin_key, client_key, fields, field, says):
    body = {"api_key": client_key.prefix, "url": "http://127.0.0.1:9/hook", **fields}
    refused = create(api, admin_key, **body)
    assert refused.status_code == 400, refused.content
    assert field in refused.json()["errors"] and says in str(refused.json()["errors"][field])
    assert not WebhookEndpoint.objects.exists()


def test_only_admin_keys_may_use_it(api, require_auth, make_key, client_key):
    inference = bearer(make_key("inference", "worker"))
    assert api.get("/api/webhooks", **inference).status_code == 403
    assert create(api, inference, api_key=client_key.prefix, url="http://127.0.0.1:9/h").status_code == 403
    assert api.get("/api/webhooks").status_code == 401
