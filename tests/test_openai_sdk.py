"""The official openai SDK against the gateway as it is served (gunicorn, gevent workers)."""

import http.client
import json
import socket
import threading
import uuid

import openai
import pytest

from tests.conftest import SEED_ANSWER, seed_registration
from tests.fake_model_apis import OpenAIServer
from tests.gateway_process import GatewayProcess, gateway_database
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway")
    with gateway_database(tmp) as env:
        env = {**env, "MMM_WEB_WORKERS": "1", "MMM_REQUIRE_AUTH": "true"}
        process = GatewayProcess(env=env, log_path=tmp / "gateway.log")
        process.manage("migrate", "--noinput", "-v0").check_returncode()
        process.headers = {"Authorization": f"Bearer {process.create_api_key(scope='admin')}"}
        process.inference_key = process.create_api_key(scope="inference")
        process.start()
        yield process
        process.stop()


@pytest.fixture
def client(gateway):
    # The SDK sends its api_key as "Authorization: Bearer": a gateway key of the inference scope.
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.inference_key, max_retries=0, timeout=30)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def register_openai(gateway, base_url: str, **fields) -> str:
    model_name = fields.pop("model_name", unique("gpt"))
    registration = {
        "model_name": model_name,
        "preset": "openai",
        "base_url": base_url,
        "api_key": "sk-upstream-key",
        "upstream_model": "up-model",
        **fields,
    }
    gateway.post("/api/server/register", registration).raise_for_status()
    return model_name


def wait_for_log(gateway, text: str, seconds: float = 10.0) -> None:
    wait_until(lambda: text in gateway.log_path.read_text(), timeout=seconds, what=f"{text!r} in the gateway's log")


def test_a_chat_completion_passes_every_field_through_with_only_the_model_rewritten(gateway, client, upstream):
    server = OpenAIServer()
    model = register_openai(gateway, server.install(upstream))
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]

    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        temperature=0.3,
        max_tokens=50,
        seed=7,
        tools=tools,
        response_format={"type": "json_object"},
    )

    assert completion.choices[0].message.content == "Hello from the fake server."
    assert completion.usage.total_tokens == 11
    sent = upstream.hits("/v1/chat/completions")[-1]
    assert sent.json == {
        "model": "up-model",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "temperature": 0.3,
        "max_tokens": 50,
        "seed": 7,
        "tools": tools,
        "response_format": {"type": "json_object"},
    }
    assert sent.headers["Authorization"] == "Bearer sk-upstream-key"  # the worker's key, not the client's


def test_a_streamed_chat_reaches_the_client_before_the_upstream_has_finished(gateway, client, upstream):
    # The upstream sends one chunk and then waits until the client has seen it.
    server = OpenAIServer(release=threading.Event(), hold_after=2)
    model = register_openai(gateway, server.install(upstream))

    pieces = []
    for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], stream=True):
        pieces.append(chunk.choices[0].delta.content or "")
        if chunk.choices[0].delta.content:
            server.release.set()

    assert server.released_in_time is True
    assert "".join(pieces) == "Hello from the fake server."


def test_the_models_list_has_every_model_with_a_routable_worker(gateway, client, upstream):
    server = OpenAIServer()
    base = server.install(upstream)
    routable = register_openai(gateway, base)
    drained = register_openai(gateway, base, weight=0)
    seed_model = unique("seed")
    gateway.post(
        "/api/server/register", seed_registration(upstream.url("/gen"), model_name=seed_model)
    ).raise_for_status()

    listed = {model.id: model for model in client.models.list()}

    assert routable in listed and seed_model in listed
    assert drained not in listed
    assert listed[routable].object == "model"


def test_embeddings_come_back_from_the_openai_worker(gateway, client, upstream):
    server = OpenAIServer()
    model = register_openai(gateway, server.install(upstream))

    result = client.embeddings.create(model=model, input=["ab", "cde"])

    assert [item.embedding for item in result.data] == [[2.0, 0.5, -1.0], [3.0, 0.5, -1.0]]
    assert upstream.hits("/v1/embeddings")[-1].json["input"] == ["ab", "cde"]


def test_an_unknown_model_raises_not_found(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model=unique("missing"), messages=[{"role": "user", "content": "Hi"}])
    assert raised.value.code == "model_not_found"


def test_a_template_worker_answers_a_chat_completion(gateway, client, upstream):
    model = unique("seed")
    gateway.post("/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER), model_name=model))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "who are you?"}]

    completion = client.chat.completions.create(model=model, messages=messages)

    assert completion.choices[0].message.content == "I am a fake model."
    assert completion.object == "chat.completion" and completion.model == model
    assert upstream.hits("/gen")[-1].json == {"input": "who are you?", "model_name": model}


def test_a_template_worker_answers_a_streamed_chat_completion_ending_in_done(gateway, client, upstream):
    model = unique("chat-template")
    registration = {
        "model_name": model,
        "req_url_template": upstream.on("/chat", json={"reply": {"text": "Streamed from a template."}}),
        "body": {"conversation": "{MESSAGES}", "limit": "{MAX_TOKENS}"},
        "response_extract": "reply.text",
    }
    gateway.post("/api/server/register", registration).raise_for_status()
    messages = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
    ]

    with client.chat.completions.with_streaming_response.create(
        model=model, messages=messages, max_tokens=12, stream=True
    ) as response:
        raw = b"".join(response.iter_bytes())
    stream = client.chat.completions.create(model=model, messages=messages, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)

    assert text == "Streamed from a template."
    assert raw.rstrip().endswith(b"data: [DONE]")
    assert upstream.hits("/chat")[0].json == {"conversation": messages, "limit": 12}


def test_a_stream_cut_by_the_upstream_ends_with_an_error_event(gateway, client, upstream):
    server = OpenAIServer(cut_after=3)
    model = register_openai(gateway, server.install(upstream))
    received = []

    with pytest.raises(openai.APIError) as raised:
        for chunk in client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], stream=True
        ):
            received.append(chunk.choices[0].delta.content)

    assert received == ["", "Hello", " from"]
    assert "cut off" in raised.value.message
    assert raised.value.body["code"] == "stream_interrupted"


def test_a_client_that_disconnects_mid_stream_makes_the_gateway_close_the_upstream(gateway, upstream):
    server = OpenAIServer(words=tuple(f" w{i}" for i in range(400)), pause=0.02)
    model = register_openai(gateway, server.install(upstream))
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {gateway.inference_key}"}
    connection.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=headers)
    response = connection.getresponse()
    assert response.status == 200
    assert response.read(6) == b"data: "  # the stream has begun
    connection.sock.shutdown(socket.SHUT_RDWR)
    connection.close()

    seen = upstream.hits("/v1/chat/completions")[-1]
    assert seen.answered.wait(10), "the upstream kept streaming to a client that had gone"
    assert seen.aborted
    # The attempt was settled, and the worker's in-flight slot given back.
    wait_for_log(gateway, f"model={model} worker=")
    wait_for_log(gateway, "error_code=client_gone")
    [worker] = gateway.get("/api/server/workers", model_name=model).json()["data"]
    assert worker["traffic"]["in_flight"] == 0
