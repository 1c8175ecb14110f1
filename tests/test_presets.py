"""Presets: one registration with a base URL (and a key) onboards a server of a known API."""

import pytest

from registry.models import Worker
from tests.fake_anthropic import AnthropicServer
from tests.fake_model_apis import OpenAIServer
from tests.fake_ollama import OllamaServer
from tests.fake_tgi import TGIServer

pytestmark = pytest.mark.django_db

CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": [{"type": "text", "text": "second question"}]},
]


def register(api, **fields):
    return api.post("/api/server/register", fields, format="json")


def chat(api, model: str, **extra):
    response = api.post("/v1/chat/completions", {"model": model, "messages": CHAT, **extra}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["choices"][0]["message"]["content"]


def test_the_anthropic_preset_makes_an_anthropic_worker_at_the_base_url_with_the_key_as_x_api_key(api, upstream):
    server = AnthropicServer(api_key="sk-ant-secret-key")
    base = server.install(upstream)
    response = register(
        api,
        model_name="claude",
        preset="anthropic",
        base_url=base,
        api_key="sk-ant-secret-key",
        upstream_model="claude-3-5-haiku-latest",
    )

    assert response.status_code == 200, response.content
    worker = response.json()["worker"]
    assert (worker["kind"], worker["req_url_template"], worker["body"]) == ("anthropic", base.rstrip("/"), None)
    assert worker["header_names"] == ["anthropic-version", "x-api-key"]
    assert worker["response_extract"] == ""
    assert "sk-ant-secret-key" not in response.content.decode()

    assert chat(api, "claude", max_tokens=99) == "Hello from Claude."
    sent = upstream.hits("/v1/messages")[-1]
    assert sent.json["model"] == "claude-3-5-haiku-latest"
    assert sent.json["system"] == "You are terse."
    assert [message["role"] for message in sent.json["messages"]] == ["user", "assistant", "user"]
    assert sent.json["max_tokens"] == 99
    assert sent.headers["anthropic-version"] == "2023-06-01"


def test_the_anthropic_preset_sends_a_default_max_tokens_when_the_client_gives_none(api, upstream):
    server = AnthropicServer(api_key="sk-ant-secret-key")
    register(
        api, model_name="claude", preset="anthropic", base_url=server.install(upstream), api_key="sk-ant-secret-key"
    )

    response = api.post("/api/v1/chat/completions", {"model_name": "claude", "input": "hello"}, format="json")

    assert response.json()["result"] == "Hello from Claude."
    assert server.bodies[-1]["max_tokens"] == 1024
    assert "system" not in server.bodies[-1]  # no system message: no system field


def test_the_anthropic_preset_needs_a_key(api):
    response = register(api, model_name="claude", preset="anthropic", base_url="https://api.anthropic.com")

    assert response.status_code == 400
    assert response.json()["errors"] == {"api_key": ["is required with the anthropic preset"]}
    assert not Worker.objects.exists()


def test_the_ollama_preset_sends_the_whole_chat_to_api_chat(api, upstream):
    server = OllamaServer(models=("llama3.1:8b",))
    register(api, model_name="llama", preset="ollama", base_url=server.install(upstream), upstream_model="llama3.1:8b")

    assert chat(api, "llama", temperature=0.2) == "Hello from Ollama."
    assert server.bodies[-1] == {
        "model": "llama3.1:8b",
        "stream": False,
        "options": {"temperature": 0.2},
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "second question"},
        ],
    }


def test_the_tgi_preset_sends_the_chat_to_the_messages_api(api, upstream):
    server = TGIServer()
    register(api, model_name="tgi", preset="tgi", base_url=server.install(upstream))

    assert chat(api, "tgi", max_tokens=20) == "Hello from TGI. (call 1)"
    assert server.bodies[-1] == {"model": "tgi", "messages": CHAT, "max_tokens": 20}


def test_the_openai_preset_registers_an_openai_worker_at_the_base_url(api, upstream):
    base = OpenAIServer().install(upstream)
    response = register(
        api, model_name="gpt", preset="openai", base_url=base, api_key="sk-openai-secret", upstream_model="up-model"
    )

    worker = response.json()["worker"]
    assert (worker["kind"], worker["req_url_template"], worker["body"]) == ("openai", base, None)
    assert chat(api, "gpt") == "Hello from the fake server."
    # The seed endpoint reaches openai workers too: the input is one user message.
    seed = api.post("/api/v1/chat/completions", {"model_name": "gpt", "input": "hi"}, format="json").json()
    assert seed == {"success": True, "msg": "execute succeed", "result": "Hello from the fake server."}
    assert upstream.hits("/v1/chat/completions")[-1].json == {
        "model": "up-model",
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert upstream.hits("/v1/chat/completions")[-1].headers["Authorization"] == "Bearer sk-openai-secret"


@pytest.mark.parametrize(
    "fields, field, says",
    [
        ({"preset": "ollama"}, "base_url", "is required with the ollama preset"),
        ({"preset": "ollama", "base_url": "ftp://host"}, "base_url", "must be an absolute http:// or https:// URL"),
        (
            {"preset": "tgi", "base_url": "http://h", "req_url_template": "http://h/generate"},
            "req_url_template",
            "give base_url instead",
        ),
        ({"preset": "openai", "base_url": "http://h", "kind": "template"}, "kind", "makes openai workers"),
        (
            {"preset": "ollama", "base_url": "http://h", "response_extract": "message"},
            "response_extract",
            "must be empty for ollama workers",
        ),
        ({"preset": "nope", "base_url": "http://h"}, "preset", "is not a valid choice"),
        ({"req_url_template": "http://h/x", "api_key": "k"}, "api_key", "is only used with a preset"),
    ],
)
def test_a_preset_registration_that_is_wrong_says_which_field(api, fields, field, says):
    response = register(api, model_name="m", **fields)

    assert response.status_code == 400
    assert says in response.json()["errors"][field][0]
    assert not Worker.objects.exists()


def test_fields_given_with_a_preset_win_and_headers_are_added(api):
    response = register(
        api,
        model_name="m",
        preset="ollama",
        base_url="http://h:11434/",
        headers={"X-Team": "a"},
        upstream_model="qwen3",
        timeout=5,
    )

    worker = Worker.objects.get()
    assert worker.req_url_template == "http://h:11434"
    assert worker.headers == {"X-Team": "a"}
    assert (worker.upstream_model, worker.timeout, worker.preset) == ("qwen3", 5, "ollama")
    assert response.json()["worker"]["preset"] == "ollama"


def test_the_admin_add_form_offers_the_presets_and_fills_in_the_worker(admin_client):
    page = admin_client.get("/admin/registry/worker/add/").content.decode()
    for name in ("openai", "ollama", "anthropic", "tgi"):
        assert f'value="{name}"' in page

    response = admin_client.post(
        "/admin/registry/worker/add/",
        {
            "use_preset": "anthropic",
            "base_url": "https://api.anthropic.com",
            "api_key": "sk-ant-admin-key",
            "model_name": "claude",
            "kind": "template",
            "method": "POST",
            "headers": "{}",
            "body": "null",
            "weight": "1",
            "enabled": "on",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    worker = Worker.objects.get()
    assert worker.req_url_template == "https://api.anthropic.com"
    assert worker.headers == {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-admin-key"}
    assert (worker.kind, worker.preset, worker.response_extract, worker.body) == ("anthropic", "anthropic", "", None)


def test_an_openai_base_url_with_a_query_string_keeps_it_after_the_endpoint_path():
    from inference.protocols.openai import endpoint_url

    worker = Worker(kind="openai", req_url_template="https://llm.example/openai/v1/?api-version=2024-10-21")

    assert (
        endpoint_url(worker, "/chat/completions")
        == "https://llm.example/openai/v1/chat/completions?api-version=2024-10-21"
    )
