"""Keys off (MMM_REQUIRE_AUTH=false, as `make serve` runs): a placeholder key such as the
OpenAI(api_key="EMPTY") that vLLM, Ollama and LiteLLM accept is no key at all, while a real
key still brings its scopes and model list."""

import pytest

from tests.conftest import SEED_ANSWER, bearer, seed_registration

pytestmark = pytest.mark.django_db

CHAT = {"model": "proxyllm", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def seed_worker(api, upstream):
    api.post("/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER)), format="json")


@pytest.mark.parametrize("headers", [bearer("EMPTY"), bearer("sk-no-key-required"), {"HTTP_X_API_KEY": "placeholder"}])
def test_a_key_the_gateway_does_not_know_is_anonymous_with_keys_off(api, seed_worker, headers):
    chat = api.post("/v1/chat/completions", CHAT, format="json", **headers)
    listed = api.get("/v1/models", **headers)
    anthropic = api.post("/v1/messages", {**CHAT, "max_tokens": 5}, format="json", **headers)

    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"] == "I am a fake model."
    assert [model["id"] for model in listed.json()["data"]] == ["proxyllm"]
    assert anthropic.status_code == 200 and anthropic.json()["content"][0]["text"] == "I am a fake model."


def test_with_keys_on_the_same_placeholder_is_refused(api, seed_worker, require_auth):
    response = api.post("/v1/chat/completions", CHAT, format="json", **bearer("EMPTY"))

    assert response.status_code == 401


def test_a_real_key_keeps_its_scopes_and_models_with_keys_off(api, seed_worker, make_key):
    worker_key, other_models_key = make_key("worker"), make_key("inference", allowed_models=["other"])

    wrong_scope = api.post("/v1/chat/completions", CHAT, format="json", **bearer(worker_key))
    wrong_model = api.post("/v1/chat/completions", CHAT, format="json", **bearer(other_models_key))

    assert wrong_scope.status_code == 403 and wrong_scope.json()["error"]["code"] == "scope_missing"
    assert wrong_model.status_code == 403 and wrong_model.json()["error"]["code"] == "model_not_allowed"
