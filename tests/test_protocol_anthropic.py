"""anthropic workers: an OpenAI chat translated to Anthropic's Messages API and back, against a
fake of that API (tests/fake_anthropic.py)."""

import json

import pytest

from tests.chat_helpers import (
    PNG_BASE64,
    PNG_DATA_URL,
    WEATHER_TOOL,
    chat,
    finish_reasons,
    register_kind,
    stream_events,
    streamed_text,
    streamed_tool_calls,
)
from tests.fake_anthropic import AnthropicServer

pytestmark = pytest.mark.django_db

TOOL_USE = {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}


@pytest.fixture
def claude(api, upstream):
    server = AnthropicServer()
    register_kind(
        api,
        model_name="claude",
        preset="anthropic",
        base_url=server.install(upstream),
        api_key=server.api_key,
        upstream_model="claude-haiku-4-5",
    )
    return server


def test_a_chat_becomes_a_messages_request_with_the_system_prompt_on_top(api, claude):
    response = chat(
        api,
        model="claude",
        temperature=0.5,
        top_p=0.9,
        stop="END",
        max_completion_tokens=50,
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "Hi"},
        ],
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "claude"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello from Claude."},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    assert claude.bodies[-1] == {
        "model": "claude-haiku-4-5",
        "system": "Be terse.\n\nAnswer in English.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 50,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop_sequences": ["END"],
    }


def test_without_max_tokens_the_documented_default_is_sent(api, claude):
    chat(api, model="claude", messages=[{"role": "user", "content": "Hi"}])

    assert claude.bodies[-1]["max_tokens"] == 1024


def test_tools_go_as_input_schemas_and_a_tool_use_comes_back_as_a_tool_call(api, claude):
    claude.blocks, claude.stop_reason = [{"type": "text", "text": "Let me look."}, TOOL_USE], "tool_use"

    response = chat(
        api,
        model="claude",
        tools=[WEATHER_TOOL],
        tool_choice="required",
        parallel_tool_calls=False,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )

    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me look."
    call = choice["message"]["tool_calls"][0]
    assert (call["id"], call["type"], call["function"]["name"]) == ("toolu_01A", "function", "get_weather")
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    sent = claude.bodies[-1]
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_a_tool_round_trip_sends_tool_use_and_tool_result_blocks(api, claude):
    response = chat(
        api,
        model="claude",
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "rain"}]},
        ],
    )

    assert response.status_code == 200, response.content
    sent = claude.bodies[-1]
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        # Both results in the one user turn that follows, as the API wants them.
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rain"},
            ],
        },
    ]


def test_image_parts_become_base64_and_url_image_blocks(api, claude):
    response = chat(
        api,
        model="claude",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            }
        ],
    )

    assert response.status_code == 200, response.content
    assert claude.bodies[-1]["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_BASE64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]


@pytest.mark.parametrize(
    "stop_reason, finish",
    [("end_turn", "stop"), ("max_tokens", "length"), ("stop_sequence", "stop"), ("tool_use", "tool_calls")],
)
def test_stop_reasons_become_finish_reasons(api, claude, stop_reason, finish):
    claude.stop_reason = stop_reason

    response = chat(api, model="claude", messages=[{"role": "user", "content": "Hi"}])

    assert response.json()["choices"][0]["finish_reason"] == finish


def test_n_is_that_many_calls_with_their_usage_added_up(api, claude):
    response = chat(api, model="claude", n=3, messages=[{"role": "user", "content": "Hi"}])

    body = response.json()
    assert [choice["index"] for choice in body["choices"]] == [0, 1, 2]
    assert body["usage"] == {"prompt_tokens": 36, "completion_tokens": 21, "total_tokens": 57}
    assert len(claude.bodies) == 3 and "n" not in claude.bodies[-1]


def test_a_stream_is_relayed_as_chunks_with_tool_call_deltas_and_usage(api, claude):
    claude.blocks, claude.stop_reason = [{"type": "text", "text": "Checking the weather."}, TOOL_USE], "tool_use"

    events = stream_events(
        chat(
            api,
            model="claude",
            stream=True,
            stream_options={"include_usage": True},
            tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": "Weather?"}],
        )
    )

    assert claude.bodies[-1]["stream"] is True
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(event["object"] == "chat.completion.chunk" for event in events[:-1])
    assert len({event["id"] for event in events[:-1]}) == 1
    assert streamed_text(events) == "Checking the weather."
    [call] = streamed_tool_calls(events)
    assert (call["id"], call["name"], json.loads(call["arguments"])) == ("toolu_01A", "get_weather", {"city": "Paris"})
    assert finish_reasons(events) == ["tool_calls"]
    assert events[-2] == {
        **events[-2],
        "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    }
    assert events[-1] == "[DONE]"


def test_a_stream_without_include_usage_has_no_usage_chunk(api, claude):
    events = stream_events(chat(api, model="claude", stream=True, messages=[{"role": "user", "content": "Hi"}]))

    assert streamed_text(events) == "Hello from Claude."
    assert not any(isinstance(event, dict) and "usage" in event for event in events)
    assert events[-1] == "[DONE]"


def test_a_stream_cut_mid_way_ends_with_an_error_event_and_no_done(api, claude):
    claude.cut_after = 4  # message_start, ping, content_block_start, one text delta

    events = stream_events(chat(api, model="claude", stream=True, messages=[{"role": "user", "content": "Hi"}]))

    assert streamed_text(events) == "Hello "
    assert events[-1]["error"]["code"] == "stream_interrupted"
    assert "cut off" in events[-1]["error"]["message"]
    assert "[DONE]" not in events


def test_an_error_event_in_the_stream_reaches_the_client_as_an_error_event(api, claude):
    claude.error_mid_stream = True

    events = stream_events(chat(api, model="claude", stream=True, messages=[{"role": "user", "content": "Hi"}]))

    assert streamed_text(events) == "Hello from Claude."
    assert "overloaded_error: Overloaded" in events[-1]["error"]["message"]
    assert "[DONE]" not in events


def test_a_429_reaches_the_client_as_a_429_with_the_retry_after(api, claude):
    claude.status, claude.retry_after = 429, "7"

    response = chat(api, model="claude", messages=[{"role": "user", "content": "Hi"}])

    assert response.status_code == 429, response.content
    assert response["Retry-After"] == "7"
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_a_refusal_comes_back_with_anthropics_message_and_status(api, claude):
    response = chat(api, model="claude", temperature=1.5, messages=[{"role": "user", "content": "Hi"}])

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "upstream_rejected"
    assert "temperature: Input should be less than or equal to 1" in error["message"]
    assert claude.api_key not in response.content.decode()


def test_json_mode_is_refused_with_a_400_saying_why(api, claude):
    response = chat(
        api, model="claude", response_format={"type": "json_object"}, messages=[{"role": "user", "content": "Hi"}]
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "response_format")
    assert "no JSON mode" in error["message"]
    assert not claude.bodies  # refused before anything was sent


def test_the_seed_endpoint_reaches_an_anthropic_worker(api, claude):
    response = api.post("/api/v1/chat/completions", {"model_name": "claude", "input": "hello"}, format="json")

    assert response.json() == {"success": True, "msg": "execute succeed", "result": "Hello from Claude."}
    assert claude.bodies[-1]["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]


def test_a_stream_that_ends_cleanly_without_message_stop_is_cut_off(api, claude, upstream):
    from tests.fake_anthropic import event

    upstream.on(
        "/v1/messages",
        stream=iter(
            [
                event(
                    "message_start",
                    {"type": "message_start", "message": {"usage": {"input_tokens": 1, "output_tokens": 1}}},
                ),
                event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
                ),
            ]
        ),
    )

    events = stream_events(chat(api, model="claude", stream=True, messages=[{"role": "user", "content": "Hi"}]))

    assert streamed_text(events) == "Hi"
    assert "without message_stop" in events[-1]["error"]["message"]
    assert "[DONE]" not in events


def test_an_overloaded_worker_is_retried_on_another(api, claude, upstream):
    healthy = AnthropicServer(blocks=[{"type": "text", "text": "From the second."}])
    from tests.fake_upstream import FakeUpstream

    second = FakeUpstream().start()
    try:
        register_kind(
            api,
            model_name="claude",
            preset="anthropic",
            base_url=healthy.install(second),
            api_key=healthy.api_key,
            upstream_model="claude-haiku-4-5",
        )
        claude.status = 529

        for _ in range(3):
            response = chat(api, model="claude", messages=[{"role": "user", "content": "Hi"}])
            assert response.json()["choices"][0]["message"]["content"] == "From the second."
    finally:
        second.stop()


def test_n_streamed_is_that_many_streams_in_a_row_as_choices_of_one_stream(api, claude):
    events = stream_events(
        chat(
            api,
            model="claude",
            n=2,
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Hi"}],
        )
    )

    assert len(claude.bodies) == 2 and all(body["stream"] for body in claude.bodies)
    by_choice = {}
    for event in events[:-2]:
        for choice in event["choices"]:
            by_choice.setdefault(choice["index"], []).append(choice["delta"].get("content") or "")
    assert {index: "".join(parts) for index, parts in by_choice.items()} == {
        0: "Hello from Claude.",
        1: "Hello from Claude.",
    }
    assert finish_reasons(events) == ["stop", "stop"]
    assert len({event["id"] for event in events[:-1]}) == 1
    assert events[-2]["usage"] == {"prompt_tokens": 24, "completion_tokens": 14, "total_tokens": 38}
    assert events.count("[DONE]") == 1 and events[-1] == "[DONE]"


def test_n_streamed_ends_with_an_error_event_when_a_later_stream_fails(api, claude, upstream):
    from tests.fake_anthropic import error

    calls = []

    def second_fails(seen):
        calls.append(seen)
        return error(500, "Internal server error") if len(calls) == 2 else claude.messages(seen)

    upstream.on("/v1/messages", second_fails)

    events = stream_events(chat(api, model="claude", n=3, stream=True, messages=[{"role": "user", "content": "Hi"}]))

    assert len(calls) == 2  # the third is not asked for
    assert streamed_text(events) == "Hello from Claude."
    assert "before choice 1" in events[-1]["error"]["message"] and "HTTP 500" in events[-1]["error"]["message"]
    assert "[DONE]" not in events
