"""Who may call what: keys, scopes, model lists, owners, revocation and expiry."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework.views import APIView

from accounts.models import ApiKey
from registry.models import Worker, WorkerEvent
from tests.conftest import SEED_ANSWER, bearer, seed_registration

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("require_auth")]

URL = "http://127.0.0.1:9/gen"
# Every API endpoint: method, path, a valid body, the scope it needs.
ENDPOINTS = [
    ("post", "/api/server/register", seed_registration(URL), "worker"),
    ("get", "/api/server/workers", None, "worker"),
    ("post", "/api/server/offline", {"model_name": "proxyllm", "req_url_template": URL}, "worker"),
    ("post", "/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, "inference"),
    ("post", "/api/server/heartbeat", {"model_name": "proxyllm", "req_url_template": URL}, "worker"),
    ("get", "/api/server/policies", None, "worker"),
    ("post", "/api/server/policy", {"model_name": "proxyllm", "strategy": "random"}, "admin"),
    ("post", "/api/server/policy/delete", {"model_name": "proxyllm"}, "admin"),
    ("post", "/api/server/model/owner", {"model_name": "proxyllm", "owner": None}, "admin"),
    ("get", "/api/usage", None, "admin"),
    ("get", "/api/webhooks", None, "admin"),
    ("post", "/api/webhooks", {"api_key": "abcd1234", "url": "http://127.0.0.1:9/hook"}, "admin"),
    ("get", "/api/webhooks/1", None, "admin"),
    ("delete", "/api/webhooks/1", None, "admin"),
]
OTHER_SCOPE = {"worker": "inference", "inference": "worker", "admin": "worker"}
# The OpenAI-compatible endpoints answer errors in the OpenAI shape, which the SDKs read.
V1_ENDPOINTS = [
    ("get", "/v1/models", None),
    ("post", "/v1/chat/completions", {"model": "proxyllm", "messages": [{"role": "user", "content": "hi"}]}),
    ("post", "/v1/completions", {"model": "proxyllm", "prompt": "hi"}),
    ("post", "/v1/embeddings", {"model": "proxyllm", "input": "hi"}),
    ("post", "/v1/images/generations", {"model": "proxyllm", "prompt": "a cat"}),
    ("post", "/v1/responses", {"model": "proxyllm", "input": "hi"}),
    ("get", "/v1/responses/resp_123", None),
    ("delete", "/v1/responses/resp_123", None),
    ("get", "/v1/models/proxyllm", None),
    ("post", "/v1/videos", {"model": "proxyllm", "prompt": "a boat"}),
    ("get", "/v1/videos", None),
    ("get", "/v1/videos/video_123", None),
    ("delete", "/v1/videos/video_123", None),
    ("get", "/v1/videos/video_123/content", None),
    ("post", "/v1/images/jobs", {"model": "proxyllm", "prompt": "a cat"}),
    ("get", "/v1/images/jobs/imgjob_123", None),
    ("get", "/v1/usage", None),
]
# The Anthropic Messages API answers errors in Anthropic's shape, which its SDK reads.
MESSAGES_BODY = {"model": "proxyllm", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def call(api, method, path, body, **headers):
    return getattr(api, method)(path, body, format="json", **headers) if body else getattr(api, method)(path, **headers)


def api_views(resolver=None) -> set[type]:
    """Every DRF view class the URLconf routes to."""
    found = set()
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            found |= api_views(entry)
        elif isinstance(entry, URLPattern):
            view_class = getattr(entry.callback, "view_class", None)
            if view_class and issubclass(view_class, APIView):
                found.add(view_class)
    return found


# The API's own description needs no key, on purpose (docs/openapi.md; tests/test_openapi.py).
PUBLIC_PATHS = ["/api/schema/", "/api/docs/", "/api/redoc/"]


def test_the_list_of_endpoints_here_covers_every_api_view():
    listed = {get_resolver().resolve(path).func.view_class for _, path, *_ in ENDPOINTS + V1_ENDPOINTS}
    listed.add(get_resolver().resolve("/v1/messages").func.view_class)
    # drf-spectacular's views, which mmm/urls.py imports on their first request.
    from drf_spectacular import views as schema_views

    listed |= {getattr(schema_views, get_resolver().resolve(path).func.view_name) for path in PUBLIC_PATHS}
    unlisted = sorted(view.__name__ for view in api_views() - listed)
    assert unlisted == [], "add these endpoints to ENDPOINTS (and tests/test_fuzz.py) with the scope they need"


@pytest.mark.parametrize("path", PUBLIC_PATHS)
def test_the_apis_description_is_served_without_a_key(api, path):
    assert api.get(path).status_code == 200


@pytest.mark.parametrize("method, path, body, scope", ENDPOINTS)
def test_every_endpoint_refuses_a_request_without_a_key_with_401(api, method, path, body, scope):
    response = call(api, method, path, body)

    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "msg": "Authentication credentials were not provided.",
        "code": "not_authenticated",
    }
    assert response["WWW-Authenticate"] == 'Bearer realm="mmm"'


@pytest.mark.parametrize("method, path, body", V1_ENDPOINTS)
def test_every_v1_endpoint_refuses_a_request_without_a_key_with_an_openai_401(api, method, path, body):
    response = call(api, method, path, body)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == 'Bearer realm="mmm"'


@pytest.mark.parametrize("method, path, body", V1_ENDPOINTS)
def test_every_v1_endpoint_refuses_a_worker_key_with_an_openai_403(api, make_key, method, path, body):
    response = call(api, method, path, body, **bearer(make_key("worker")))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_missing"


def test_the_messages_api_refuses_a_request_without_a_key_with_an_anthropic_401(api):
    response = api.post("/v1/messages", MESSAGES_BODY, format="json")

    assert response.status_code == 401
    assert response.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Authentication credentials were not provided."},
    }


@pytest.mark.parametrize("headers", [{"HTTP_X_API_KEY": "nonsense"}, {"HTTP_AUTHORIZATION": "Bearer nonsense"}])
def test_the_messages_api_refuses_a_made_up_key_with_an_anthropic_401(api, headers):
    response = api.post("/v1/messages", MESSAGES_BODY, format="json", **headers)

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert "nonsense" not in response.content.decode()


def test_the_messages_api_refuses_a_worker_key_with_an_anthropic_403(api, make_key):
    response = api.post("/v1/messages", MESSAGES_BODY, format="json", HTTP_X_API_KEY=make_key("worker"))

    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    assert "lacks the 'inference' scope" in response.json()["error"]["message"]


@pytest.mark.parametrize("method, path, body, scope", ENDPOINTS)
def test_every_endpoint_refuses_a_key_without_its_scope_with_403(api, make_key, method, path, body, scope):
    response = call(api, method, path, body, **bearer(make_key(OTHER_SCOPE[scope])))

    assert response.status_code == 403
    assert response.json()["code"] == "scope_missing"
    assert f"lacks the {scope!r} scope" in response.json()["msg"]
    assert not Worker.objects.exists()


@pytest.mark.parametrize("method, path, body, scope", ENDPOINTS)
@pytest.mark.parametrize(
    "fields", [{"revoked": True}, {"expires_at": timezone.now() - timedelta(seconds=1)}], ids=["revoked", "expired"]
)
def test_every_endpoint_refuses_a_revoked_or_expired_key_with_401(api, make_key, method, path, body, scope, fields):
    key = make_key(scope)
    ApiKey.objects.update(**fields)

    response = call(api, method, path, body, **bearer(key))

    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert key not in response.content.decode()


@pytest.mark.parametrize("presented", ["nonsense", "mmm_abcdefgh_" + "x" * 43, "Basic dXNlcjpwYXNz"])
def test_a_made_up_key_is_refused_with_401(api, presented):
    response = api.get("/api/server/workers", HTTP_X_API_KEY=presented)

    assert response.status_code == 401
    assert presented not in response.content.decode()


def test_a_key_that_differs_from_a_real_one_after_its_prefix_is_refused(api, make_key):
    key = make_key("admin")
    forged = key[:-4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")

    assert api.get("/api/server/workers", **bearer(forged)).status_code == 401
    assert api.get("/api/server/workers", **bearer(key)).status_code == 200


def test_an_inference_key_outside_its_model_list_gets_403_and_nothing_is_sent_upstream(api, make_key, upstream):
    url = upstream.on("/gen", json=SEED_ANSWER)
    api.post("/api/server/register", seed_registration(url), format="json", **bearer(make_key("admin")))
    key = make_key("inference", allowed_models=["chatglm2-6b"])

    response = api.post(
        "/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json", **bearer(key)
    )

    assert response.status_code == 403
    assert response.json()["code"] == "model_not_allowed"
    assert "may not use model 'proxyllm'" in response.json()["msg"]
    assert upstream.hits("/gen") == []


def test_an_inference_key_calls_the_models_it_lists_with_bearer_or_x_api_key(api, make_key, upstream):
    url = upstream.on("/gen", json=SEED_ANSWER)
    api.post("/api/server/register", seed_registration(url), format="json", **bearer(make_key("admin")))
    key = make_key("inference", allowed_models=["proxyllm"])
    ask = {"model_name": "proxyllm", "input": "hi"}

    assert (
        api.post("/api/v1/chat/completions", ask, format="json", **bearer(key)).json()["result"] == "I am a fake model."
    )
    assert api.post("/api/v1/chat/completions", ask, format="json", HTTP_X_API_KEY=key).status_code == 200
    # The gateway's own key is not passed on to the model server.
    assert all(
        "Authorization" not in seen.headers and "X-Api-Key" not in seen.headers for seen in upstream.hits("/gen")
    )
    assert ApiKey.objects.get(allowed_models=["proxyllm"]).last_used_at is not None


def test_a_worker_key_cannot_take_another_owners_worker_offline(api, make_key):
    team_a, team_b = make_key("worker", name="team a"), make_key("worker", name="team b")
    api.post("/api/server/register", seed_registration(URL), format="json", **bearer(team_a))

    response = api.post(
        "/api/server/offline", {"model_name": "proxyllm", "req_url_template": URL}, format="json", **bearer(team_b)
    )

    assert response.status_code == 403
    assert response.json()["code"] == "not_worker_owner"
    assert Worker.objects.get().owner_key.name == "team a"


def test_a_worker_key_cannot_keep_another_owners_worker_alive(api, make_key):
    team_a, team_b = make_key("worker", name="team a"), make_key("worker", name="team b")
    api.post("/api/server/register", seed_registration(URL, ttl=30), format="json", **bearer(team_a))
    key = {"model_name": "proxyllm", "req_url_template": URL}

    assert api.post("/api/server/heartbeat", key, format="json", **bearer(team_b)).status_code == 403
    assert api.post("/api/server/heartbeat", key, format="json", **bearer(team_a)).status_code == 200


def test_a_worker_key_cannot_change_another_owners_worker_by_registering_it_again(api, make_key):
    team_a, team_b = make_key("worker", name="team a"), make_key("worker", name="team b")
    api.post("/api/server/register", seed_registration(URL, weight=1), format="json", **bearer(team_a))

    response = api.post("/api/server/register", seed_registration(URL, weight=9), format="json", **bearer(team_b))

    assert response.status_code == 403
    assert Worker.objects.get().weight == 1


def test_a_worker_key_changes_and_takes_offline_its_own_workers(api, make_key):
    key = make_key("worker")
    api.post("/api/server/register", seed_registration(URL), format="json", **bearer(key))

    assert (
        api.post("/api/server/register", seed_registration(URL, weight=4), format="json", **bearer(key)).status_code
        == 200
    )
    response = api.post(
        "/api/server/offline", {"model_name": "proxyllm", "req_url_template": URL}, format="json", **bearer(key)
    )

    assert response.status_code == 200
    assert not Worker.objects.exists()


def test_an_admin_key_takes_any_owners_worker_offline(api, make_key):
    api.post("/api/server/register", seed_registration(URL), format="json", **bearer(make_key("worker")))

    response = api.post(
        "/api/server/offline",
        {"model_name": "proxyllm", "req_url_template": URL},
        format="json",
        **bearer(make_key("admin")),
    )

    assert response.status_code == 200
    assert not Worker.objects.exists()


def test_the_audit_log_says_which_key_registered_changed_and_took_offline_a_worker(api, make_key):
    key = make_key("worker", name="team a")
    api.post("/api/server/register", seed_registration(URL + "?key=s3cret-value"), format="json", **bearer(key))
    api.post(
        "/api/server/register", seed_registration(URL + "?key=s3cret-value", weight=3), format="json", **bearer(key)
    )
    api.post(
        "/api/server/offline",
        {"model_name": "proxyllm", "req_url_template": URL + "?key=s3cret-value"},
        format="json",
        **bearer(key),
    )

    events = list(WorkerEvent.objects.order_by("id"))
    assert [event.action for event in events] == ["registered", "changed", "offline"]
    assert {event.api_key.name for event in events} == {"team a"}
    assert all(event.actor.startswith("key team a (") for event in events)
    assert events[1].changed_fields == sorted(
        seed_registration(URL, weight=3).keys() - {"model_name", "req_url_template"}
    )
    assert all(event.url == URL for event in events)  # no query string, where keys may be


def test_a_staff_user_signed_in_to_the_admin_may_use_the_api_but_writes_need_the_csrf_token(admin_user):
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(admin_user)

    assert browser.get("/api/server/workers").status_code == 200
    refused = browser.post("/api/server/register", seed_registration(URL), format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["msg"]
    assert not Worker.objects.exists()


def test_create_api_key_prints_the_key_alone_on_the_last_line(api, capsys):
    call_command("create_api_key", "--name", "ci", "--scope", "worker", "--models", "a,b", "--rpm", "5")
    output = capsys.readouterr().out.splitlines()

    key = output[-1]
    stored = ApiKey.objects.get()
    assert (stored.name, stored.scopes, stored.allowed_models, stored.rate_limit_per_minute) == (
        "ci",
        ["worker"],
        ["a", "b"],
        5,
    )
    assert key not in stored.secret_hash and key[13:] not in "".join(output[:-1])
    assert api.get("/api/server/workers", **bearer(key)).status_code == 200


def test_the_admin_shows_a_new_key_once_and_stores_only_its_hash(admin_client, api):
    response = admin_client.post(
        "/admin/accounts/apikey/add/", {"name": "console", "scopes": ["inference", "worker"], "allowed_models": "a, b"}
    )

    assert response.status_code == 200
    key = response.context["secret"]
    assert key in response.content.decode()
    stored = ApiKey.objects.get()
    assert (stored.scopes, stored.allowed_models) == (["inference", "worker"], ["a", "b"])
    assert key not in str(ApiKey.objects.values().get())
    assert key not in admin_client.get(f"/admin/accounts/apikey/{stored.pk}/change/").content.decode()
    assert api.get("/api/server/workers", **bearer(key)).status_code == 200


def test_a_key_revoked_in_the_admin_stops_working_at_once_in_this_process(admin_client, api, make_key):
    key = make_key("worker")
    assert api.get("/api/server/workers", **bearer(key)).status_code == 200

    admin_client.post(
        "/admin/accounts/apikey/", {"action": "revoke_keys", "_selected_action": [ApiKey.objects.get().pk]}
    )

    assert api.get("/api/server/workers", **bearer(key)).status_code == 401


def test_the_models_list_shows_a_key_only_its_models(api, make_key, upstream):
    admin = bearer(make_key("admin"))
    for name in ("allowed", "other"):
        registration = seed_registration(upstream.on(f"/{name}", json={}), model_name=name)
        assert api.post("/api/server/register", registration, format="json", **admin).status_code == 200

    response = api.get("/v1/models", **bearer(make_key("inference", allowed_models=["allowed"])))

    assert [model["id"] for model in response.json()["data"]] == ["allowed"]
