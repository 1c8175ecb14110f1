"""POST /v1/messages in process: what reaches the worker, Anthropic's answer and stream shapes,
its error shape, and a 400 that says what and where for bad input."""

import json
import threading

import pytest

from console.models import RequestLog
from console.request_log import request_log_writer
from tests.conftest import SEED_ANSWER, seed_registration
from tests.fake_model_apis import OpenAIServer
from tests.fake_tool_calling import ToolCallingServer

pytestmark = pytest.mark.django_db

HI = [{"role": "user", "content": "Hi"}]
TOOL = {"name": "lookup", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}


def register_openai(api, base_url: str, model_name: str = "claude-ish") -> str:
    response = api.post(
        "/api/server/register",
        {"model_name": model_name, "kind": "openai", "req_url_template": base_url, "upstream_model": "up-model"},
        format="json",
    )
    assert response.status_code == 200, response.content
    return model_name


def messages(api, **body):
    return api.post(
        "/v1/messages",
        {"model": "claude-ish", "max_tokens": 32, "messages": HI, **body},
        format="json",
        HTTP_ANTHROPIC_VERSION="2023-06-01",
    )


def events(response) -> list[tuple[str, dict]]:
    """The stream as (event name, data) pairs, checking each event names its data's type."""
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/event-stream")
    parsed = []
    for raw in b"".join(response.streaming_content).decode().split("\n\n"):
        if raw.strip():
            name_line, data_line = raw.split("\n")
            name, data = name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))
            assert data["type"] == name
            parsed.append((name, data))
    return parsed


@pytest.mark.parametrize(
    "body, where, what",
    [
        ({"model": None}, "model", "is required"),
        ({"max_tokens": None}, "max_tokens", "is required"),
        ({"max_tokens": 0}, "max_tokens", "must be at least 1"),
        ({"max_tokens": "many"}, "max_tokens", "must be a whole number, not a string"),
        ({"messages": []}, "messages", "must not be empty"),
        (
            {"messages": [{"role": "system", "content": "x"}]},
            "messages[0].role",
            "must be one of 'user', 'assistant', not 'system'",
        ),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "is required"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages[0].content[0].type",
            "content blocks of type 'document' are not supported here; this gateway translates text, image and tool_result",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AAAA"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0].source.media_type",
            "must be one of 'image/jpeg', 'image/png', 'image/gif', 'image/webp', not 'image/bmp'",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": "x"}]}
                ]
            },
            "messages[0].content[0].input",
            "must be an object, not a string",
        ),
        ({"system": 7}, "system", "must be a list, not a number"),
        (
            {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            "tools[0].type",
            "server tool 'web_search_20250305' is not supported; give client tools (name, description, input_schema)",
        ),
        ({"tools": [{"name": "f"}]}, "tools[0].input_schema", "is required"),
        ({"tools": 0}, "tools", "must be a list, not a number"),
        ({"tools": [TOOL], "tool_choice": {"type": "tool"}}, "tool_choice.name", "is required"),
        (
            {"tools": [TOOL], "tool_choice": {"type": "sometimes"}},
            "tool_choice.type",
            "must be one of 'auto', 'any', 'tool', 'none', not 'sometimes'",
        ),
        ({"stop_sequences": ["ok", 3]}, "stop_sequences[1]", "must be a string, not a number"),
        ({"stream": "yes"}, "stream", "must be true or false, not a string"),
        ({"temperature": -1}, "temperature", "must be at least 0"),
    ],
)
def test_a_bad_request_gets_a_400_in_anthropics_shape_saying_what_and_where(api, body, where, what):
    response = messages(api, **body)

    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": f"{where}: {what}"},
    }


def test_a_body_that_is_not_an_object_is_a_400(api):
    response = api.post("/v1/messages", [1, 2], format="json")

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "body: must be an object, not a list"


def test_everything_a_request_says_reaches_an_openai_worker_translated(api, upstream):
    server = ToolCallingServer()
    register_openai(api, server.install(upstream))
    image = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    conversation = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image", "source": image},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hm", "signature": "s"},
                {"type": "text", "text": "Let me look it up."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "cat"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a cat"},
                {"type": "text", "text": "And?"},
            ],
        },
    ]

    response = messages(
        api,
        messages=conversation,
        system=[{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}],
        tools=[{**TOOL, "description": "Look up"}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        stop_sequences=["END"],
        temperature=0.2,
        top_p=0.9,
        metadata={"user_id": "u-1"},
    )

    assert response.status_code == 200, response.content
    assert server.bodies[-1] == {
        "model": "up-model",
        "max_tokens": 32,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "user": "u-1",
        "messages": [
            {"role": "system", "content": "One.\n\nTwo."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me look it up.",
                "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "cat"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "a cat"},
            {"role": "user", "content": "And?"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "lookup", "parameters": TOOL["input_schema"], "description": "Look up"},
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }


def test_a_tool_choice_naming_a_tool_and_none_are_translated(api, upstream):
    server = ToolCallingServer()
    register_openai(api, server.install(upstream))

    messages(api, tools=[TOOL], tool_choice={"type": "tool", "name": "lookup"})
    named = server.bodies[-1]["tool_choice"]
    answer = messages(api, tools=[TOOL], tool_choice={"type": "none"}).json()

    assert named == {"type": "function", "function": {"name": "lookup"}}
    assert server.bodies[-1]["tool_choice"] == "none"
    assert answer["content"] == [{"type": "text", "text": "You said: Hi"}] and answer["stop_reason"] == "end_turn"


@pytest.mark.parametrize(
    "finish, matched, stop_reason, stop_sequence",
    [
        ("stop", None, "end_turn", None),
        ("stop", "END", "stop_sequence", "END"),  # vLLM says which stop string matched
        ("length", None, "max_tokens", None),
        ("content_filter", None, "refusal", None),
    ],
)
def test_finish_reasons_become_anthropics_stop_reasons(api, upstream, finish, matched, stop_reason, stop_sequence):
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": "Hi"},
        "finish_reason": finish,
        "stop_reason": matched,
    }
    register_openai(
        api,
        upstream.on(
            "/v1/chat/completions",
            json={"id": "c", "object": "chat.completion", "created": 1, "model": "up-model", "choices": [choice]},
        ).rsplit("/chat", 1)[0],
    )

    answer = messages(api, stop_sequences=["END"]).json()

    assert (answer["stop_reason"], answer["stop_sequence"]) == (stop_reason, stop_sequence)
    assert answer["usage"] == {"input_tokens": 0, "output_tokens": 0}  # the upstream said none


def test_a_template_worker_answers_with_a_text_block(api, upstream):
    api.post(
        "/api/server/register",
        seed_registration(upstream.on("/gen", json=SEED_ANSWER), model_name="claude-ish"),
        format="json",
    )

    answer = messages(api).json()

    assert answer["content"] == [{"type": "text", "text": "I am a fake model."}]
    assert answer["id"].startswith("msg_") and answer["type"] == "message" and answer["role"] == "assistant"
    assert upstream.hits("/gen")[-1].json["input"] == "Hi"


def test_a_stream_follows_anthropics_event_sequence_with_text_then_a_tool_call(api, upstream):
    chunks = [
        {"role": "assistant", "content": ""},
        {"content": "Checking"},
        {"content": "."},
        {
            "tool_calls": [
                {"index": 0, "id": "call_9", "type": "function", "function": {"name": "lookup", "arguments": ""}}
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"q": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"x"}'}}]},
    ]
    body = b"".join(
        b"data: "
        + json.dumps(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "up-model",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
        ).encode()
        + b"\n\n"
        for delta in chunks
    ) + (
        b'data: {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up-model", "choices": '
        b'[{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}\n\n'
        b'data: {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up-model", "choices": [], '
        b'"usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}}\n\ndata: [DONE]\n\n'
    )
    # Cut into pieces that split events in the middle, as TCP may.
    register_openai(
        api,
        upstream.on("/v1/chat/completions", stream=[body[i : i + 50] for i in range(0, len(body), 50)]).rsplit(
            "/chat", 1
        )[0],
    )

    stream = events(messages(api, stream=True, tools=[TOOL]))

    assert [name for name, _ in stream] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert stream[0][1]["message"]["content"] == [] and stream[0][1]["message"]["model"] == "claude-ish"
    assert stream[2][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert stream[3][1]["delta"] == {"type": "text_delta", "text": "Checking"}
    assert stream[6][1]["content_block"] == {"type": "tool_use", "id": "call_9", "name": "lookup", "input": {}}
    assert [data["delta"]["partial_json"] for _, data in stream[7:9]] == ['{"q": ', '"x"}']
    assert stream[10][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"input_tokens": 4, "output_tokens": 3},
    }


@pytest.mark.parametrize(
    "path, body, delta",
    [
        ("/v1/messages", {"max_tokens": 32, "messages": HI}, b"text_delta"),
        ("/v1/responses", {"input": "Hi"}, b"response.output_text.delta"),
    ],
)
def test_a_translated_stream_reaches_the_client_before_the_upstream_has_finished(api, upstream, path, body, delta):
    server = OpenAIServer(release=threading.Event(), hold_after=2)
    register_openai(api, server.install(upstream))
    response = api.post(path, {"model": "claude-ish", "stream": True, **body}, format="json")

    for chunk in response.streaming_content:
        if delta in chunk:
            server.release.set()  # the upstream sends the rest only once a delta has arrived here
    response.close()

    assert server.released_in_time is True


def test_a_stream_cut_by_the_upstream_ends_with_an_anthropic_error_event(api, upstream):
    register_openai(api, OpenAIServer(cut_after=3).install(upstream))

    stream = events(messages(api, stream=True))

    assert [name for name, _ in stream][-3:] == ["content_block_delta", "content_block_delta", "error"]
    assert stream[-1][1]["error"]["type"] == "api_error" and "cut off" in stream[-1][1]["error"]["message"]


def test_an_upstream_refusal_reaches_the_client_in_anthropics_shape_with_its_status(api, upstream):
    register_openai(
        api,
        upstream.on(
            "/v1/chat/completions",
            status=400,
            json={
                "error": {
                    "message": "max_tokens is too large",
                    "type": "invalid_request_error",
                    "param": "max_tokens",
                    "code": None,
                }
            },
        ).rsplit("/chat", 1)[0],
    )

    whole, streamed = messages(api), messages(api, stream=True)

    for response in (whole, streamed):
        assert response.status_code == 400
        assert response.json() == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "max_tokens is too large"},
        }


@pytest.mark.parametrize("registered, status, error_type", [(False, 404, "not_found_error"), (True, 502, "api_error")])
def test_errors_of_the_gateway_itself_are_in_anthropics_shape(api, upstream, registered, status, error_type):
    if registered:
        register_openai(api, upstream.on("/v1/chat/completions", status=500, json={}).rsplit("/chat", 1)[0])

    response = messages(api)

    assert response.status_code == status
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == error_type


def test_the_request_log_has_the_token_counts_of_a_translated_answer(api, upstream):
    register_openai(api, ToolCallingServer().install(upstream))

    messages(api)
    request_log_writer.flush()

    row = RequestLog.objects.get(model_name="claude-ish")
    assert (row.status, row.prompt_tokens, row.completion_tokens) == (200, 21, 9)
