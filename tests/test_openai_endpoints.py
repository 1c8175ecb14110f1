"""The /v1 endpoints in process: errors in the OpenAI shape, failover, passthrough of refusals."""

import pytest

from tests.conftest import SEED_ANSWER, seed_registration
from tests.fake_model_apis import OpenAIServer, sse
from tests.fake_upstream import Reply, refused_url

pytestmark = pytest.mark.django_db

HI = [{"role": "user", "content": "Hi"}]


def register_openai(api, base_url: str, model_name: str = "gpt", **fields) -> None:
    response = api.post(
        "/api/server/register",
        {
            "model_name": model_name,
            "kind": "openai",
            "req_url_template": base_url,
            "upstream_model": "up-model",
            **fields,
        },
        format="json",
    )
    assert response.status_code == 200, response.content


def post(api, path: str, payload):
    return api.post(path, payload, format="json")


def streamed(response) -> bytes:
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


@pytest.mark.parametrize(
    "payload, param",
    [
        ({"messages": HI}, "model"),
        ({"model": "gpt"}, "messages"),
        ({"model": "gpt", "messages": []}, "messages"),
        ({"model": "gpt", "messages": [{"content": "no role"}]}, "messages"),
        ({"model": "gpt", "messages": HI, "stream": "yes"}, "stream"),
        ({"model": "gpt", "messages": HI, "temperature": "hot"}, "temperature"),
    ],
)
def test_a_bad_chat_request_gets_a_400_in_the_openai_error_shape(api, payload, param):
    response = post(api, "/v1/chat/completions", payload)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid", param)
    assert error["message"].startswith(param)


def test_an_unknown_v1_path_answers_404_in_the_openai_shape(api):
    response = api.get("/v1/nothing-here")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_stream_fails_over_to_the_next_worker_before_its_first_byte(api, upstream):
    upstream.on("/broken/chat/completions", status=500, json={"error": {"message": "overloaded"}})
    register_openai(api, upstream.url("/broken"), weight=100)
    register_openai(api, OpenAIServer().install(upstream))

    body = streamed(post(api, "/v1/chat/completions", {"model": "gpt", "messages": HI, "stream": True}))

    assert body.endswith(b"data: [DONE]\n\n") and b"Hello" in body
    assert len(upstream.hits("/broken/chat/completions")) == 1


def test_a_stream_that_breaks_before_its_first_event_fails_over_too(api, upstream):
    upstream.on("/cut/chat/completions", Reply(stream=[b'data: {"partial'], cut=True))
    register_openai(api, upstream.url("/cut"), weight=100)
    register_openai(api, OpenAIServer().install(upstream))

    body = streamed(post(api, "/v1/chat/completions", {"model": "gpt", "messages": HI, "stream": True}))

    assert body.endswith(b"data: [DONE]\n\n")
    assert b"partial" not in body


def test_when_every_worker_fails_the_client_gets_a_5xx_in_the_openai_shape(api):
    register_openai(api, refused_url("/v1"))

    response = post(api, "/v1/chat/completions", {"model": "gpt", "messages": HI, "stream": True})

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"


def test_a_refusal_by_an_openai_worker_reaches_the_client_with_its_status_and_error(api, upstream):
    register_openai(api, OpenAIServer(models=("other",)).install(upstream))

    response = post(api, "/v1/chat/completions", {"model": "gpt", "messages": HI})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert len(upstream.hits("/v1/chat/completions")) == 1  # a refusal is not retried elsewhere


def test_an_upstream_error_that_quotes_the_workers_key_is_masked(api, upstream):
    upstream.on(
        "/v1/chat/completions",
        status=401,
        json={"error": {"message": "Incorrect API key provided: sk-worker-secret-key", "code": "invalid_api_key"}},
    )
    register_openai(api, upstream.url("/v1"), headers={"Authorization": "Bearer sk-worker-secret-key"})

    response = post(api, "/v1/chat/completions", {"model": "gpt", "messages": HI})

    assert response.status_code == 401
    assert "sk-worker-secret-key" not in response.content.decode()
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_an_upstream_stream_that_ends_without_done_ends_with_an_error_event(api, upstream):
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": None}],
    }
    upstream.on("/v1/chat/completions", Reply(stream=[sse(chunk), sse(chunk)]))
    register_openai(api, upstream.url("/v1"))

    body = streamed(post(api, "/v1/chat/completions", {"model": "gpt", "messages": HI, "stream": True}))

    events = body.split(b"\n\n")[:-1]
    assert len(events) == 3
    assert b'"code": "stream_interrupted"' in events[-1] and b"without [DONE]" in events[-1]
    assert b"data: [DONE]" not in body


def test_endpoints_only_openai_workers_serve_refuse_a_template_only_model(api, upstream):
    post(api, "/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER)))

    response = post(api, "/v1/embeddings", {"model": "proxyllm", "input": "x"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "model_not_supported"
    assert not upstream.hits("/gen")


def test_completions_and_image_generations_pass_through_to_openai_workers(api, upstream):
    register_openai(api, OpenAIServer().install(upstream))

    completion = post(api, "/v1/completions", {"model": "gpt", "prompt": "once", "max_tokens": 3, "echo": False})
    image = post(api, "/v1/images/generations", {"model": "gpt", "prompt": "cat", "size": "256x256"})

    assert completion.json()["choices"][0]["text"] == "completed: once"
    assert image.json()["data"][0]["url"] == "http://images.example/cat.png"
    assert upstream.hits("/v1/images/generations")[-1].json == {"model": "up-model", "prompt": "cat", "size": "256x256"}


def test_a_template_answer_that_is_not_text_becomes_json_text(api, upstream):
    post(
        api,
        "/api/server/register",
        seed_registration(upstream.on("/gen", json={"data": {"items": [{"attributes": {"answer": {"n": 1}}}]}})),
    )

    response = post(api, "/v1/chat/completions", {"model": "proxyllm", "messages": HI})

    assert response.json()["choices"][0]["message"]["content"] == '{"n": 1}'


def test_an_openai_worker_refuses_a_body_template(api):
    response = post(
        api,
        "/api/server/register",
        {"model_name": "gpt", "kind": "openai", "req_url_template": "http://h/v1", "body": {"x": "{USER_PROMPT}"}},
    )

    assert response.status_code == 400
    assert "must be empty for openai workers" in response.json()["errors"]["body"][0]
