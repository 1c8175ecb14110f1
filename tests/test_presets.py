"""Presets: one registration with a base URL (and a key) onboards a server of a known API."""

import pytest

from registry.models import Worker
from tests.fake_model_apis import OpenAIServer, anthropic_messages, ollama_chat, tgi_generate

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


def test_the_anthropic_preset_splits_out_the_system_prompt_and_sends_the_key_as_x_api_key(api, upstream):
    upstream.on("/v1/messages", anthropic_messages("sk-ant-secret-key"))
    response = register(api, model_name="claude", preset="anthropic", base_url=upstream.url(),
                        api_key="sk-ant-secret-key", upstream_model="claude-3-5-haiku-latest")

    assert response.status_code == 200, response.content
    worker = response.json()["worker"]
    assert worker["req_url_template"] == upstream.url("/v1/messages")
    assert worker["header_names"] == ["anthropic-version", "x-api-key"]
    assert worker["response_extract"] == "content[0].text"
    assert "sk-ant-secret-key" not in response.content.decode()

    assert chat(api, "claude", max_tokens=99) == "system='You are terse.' last='second question' max_tokens=99"
    sent = upstream.hits("/v1/messages")[-1]
    assert sent.json["model"] == "claude-3-5-haiku-latest"
    assert [message["role"] for message in sent.json["messages"]] == ["user", "assistant", "user"]
    assert sent.headers["anthropic-version"] == "2023-06-01"


def test_the_anthropic_preset_sends_a_default_max_tokens_when_the_client_gives_none(api, upstream):
    upstream.on("/v1/messages", anthropic_messages("sk-ant-secret-key"))
    register(api, model_name="claude", preset="anthropic", base_url=upstream.url(), api_key="sk-ant-secret-key")

    response = api.post("/api/v1/chat/completions", {"model_name": "claude", "input": "hello"}, format="json")

    assert response.json()["result"] == "system=None last='hello' max_tokens=1024"
    assert "system" not in upstream.hits("/v1/messages")[-1].json  # no system message: no system field


def test_the_anthropic_preset_needs_a_key(api):
    response = register(api, model_name="claude", preset="anthropic", base_url="https://api.anthropic.com")

    assert response.status_code == 400
    assert response.json()["errors"] == {"api_key": ["is required with the anthropic preset"]}
    assert not Worker.objects.exists()


def test_the_ollama_preset_sends_the_whole_chat_to_api_chat(api, upstream):
    upstream.on("/api/chat", ollama_chat)
    register(api, model_name="llama", preset="ollama", base_url=upstream.url(), upstream_model="llama3.1:8b")

    assert chat(api, "llama", temperature=0.2) == "4 messages, last: second question"
    sent = upstream.hits("/api/chat")[-1].json
    assert sent == {"model": "llama3.1:8b", "messages": CHAT, "stream": False, "options": {"temperature": 0.2}}


def test_the_tgi_preset_sends_the_last_user_message_to_generate(api, upstream):
    upstream.on("/generate", tgi_generate)
    register(api, model_name="tgi", preset="tgi", base_url=upstream.url())

    assert chat(api, "tgi", max_tokens=20) == "generated for 'second question' with ['max_new_tokens']"
    assert upstream.hits("/generate")[-1].json == {"inputs": "second question", "parameters": {"max_new_tokens": 20}}


def test_the_openai_preset_registers_an_openai_worker_at_the_base_url(api, upstream):
    base = OpenAIServer().install(upstream)
    response = register(api, model_name="gpt", preset="openai", base_url=base, api_key="sk-openai-secret",
                        upstream_model="up-model")

    worker = response.json()["worker"]
    assert (worker["kind"], worker["req_url_template"], worker["body"]) == ("openai", base, None)
    assert chat(api, "gpt") == "Hello from the fake server."
    # The seed endpoint reaches openai workers too: the input is one user message.
    seed = api.post("/api/v1/chat/completions", {"model_name": "gpt", "input": "hi"}, format="json").json()
    assert seed == {"success": True, "msg": "execute succeed", "result": "Hello from the fake server."}
    assert upstream.hits("/v1/chat/completions")[-1].json == {
        "model": "up-model", "messages": [{"role": "user", "content": "hi"}]
    }
    assert upstream.hits("/v1/chat/completions")[-1].headers["Authorization"] == "Bearer sk-openai-secret"


@pytest.mark.parametrize(
    "fields, field, says",
    [
        ({"preset": "ollama"}, "base_url", "is required with the ollama preset"),
        ({"preset": "ollama", "base_url": "ftp://host"}, "base_url", "must be an absolute http:// or https:// URL"),
        ({"preset": "tgi", "base_url": "http://h", "req_url_template": "http://h/generate"}, "req_url_template",
         "give base_url instead"),
        ({"preset": "openai", "base_url": "http://h", "kind": "template"}, "kind", "makes openai workers"),
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
    response = register(api, model_name="m", preset="ollama", base_url="http://h:11434/", headers={"X-Team": "a"},
                        response_extract="message", timeout=5)

    worker = Worker.objects.get()
    assert worker.req_url_template == "http://h:11434/api/chat"
    assert worker.headers == {"X-Team": "a"}
    assert (worker.response_extract, worker.timeout, worker.preset) == ("message", 5, "ollama")
    assert response.json()["worker"]["preset"] == "ollama"


def test_the_admin_add_form_offers_the_presets_and_fills_in_the_worker(admin_client):
    page = admin_client.get("/admin/registry/worker/add/").content.decode()
    for name in ("openai", "ollama", "anthropic", "tgi"):
        assert f'value="{name}"' in page

    response = admin_client.post("/admin/registry/worker/add/", {
        "use_preset": "anthropic", "base_url": "https://api.anthropic.com", "api_key": "sk-ant-admin-key",
        "model_name": "claude", "kind": "template", "method": "POST", "headers": "{}", "body": "null",
        "weight": "1", "enabled": "on",
    })

    assert response.status_code == 302, response.content.decode()[:2000]
    worker = Worker.objects.get()
    assert worker.req_url_template == "https://api.anthropic.com/v1/messages"
    assert worker.headers == {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-admin-key"}
    assert (worker.preset, worker.response_extract) == ("anthropic", "content[0].text")
    assert worker.body["messages"] == "{NON_SYSTEM_MESSAGES}"


def test_an_openai_base_url_with_a_query_string_keeps_it_after_the_endpoint_path():
    from registry.models import Worker

    worker = Worker(kind="openai", req_url_template="https://llm.example/openai/v1/?api-version=2024-10-21")

    assert worker.openai_url("/chat/completions") == "https://llm.example/openai/v1/chat/completions?api-version=2024-10-21"
