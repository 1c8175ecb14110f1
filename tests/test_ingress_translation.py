"""The ingress translations as pure functions: answers and streams the fake servers do not
send (parallel tool calls, text after a tool call, arguments that are not JSON, a stream that
stops without its end)."""

import json

from inference.ingress.anthropic_messages import MessageEvents
from inference.ingress.chat_stream import TranslatedStream, named_sse, replay_completion
from inference.ingress.responses import ResponseEvents, echoed_fields


def completion(message: dict, finish: str = "tool_calls") -> dict:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
    }


def call(index: int, name: str, arguments: str) -> dict:
    return {"id": f"call_{index}", "type": "function", "function": {"name": name, "arguments": arguments}}


def chunk_stream(*deltas: dict, finish: str | None = "tool_calls", done: bool = True) -> list[bytes]:
    chunks = [{"choices": [{"index": 0, "delta": delta, "finish_reason": None}]} for delta in deltas]
    if finish:
        chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    events = [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks]
    return events + ([b"data: [DONE]\n\n"] if done else [])


def translated(events, builder) -> list[dict]:
    raw = b"".join(TranslatedStream(iter(events), builder, named_sse)).decode()
    return [json.loads(event.split("\ndata: ", 1)[1]) for event in raw.split("\n\n") if event]


def responses_builder() -> ResponseEvents:
    return ResponseEvents(echoed=echoed_fields({"model": "m"}, store=False))


def test_parallel_tool_calls_become_one_block_or_item_each():
    answer = completion({"content": "Two lookups.", "tool_calls": [call(0, "a", '{"x": 1}'), call(1, "b", "{}")]})

    message = MessageEvents(model="m")
    replay_completion(answer, message)
    response = responses_builder()
    replay_completion(answer, response)

    assert message.message()["content"] == [
        {"type": "text", "text": "Two lookups."},
        {"type": "tool_use", "id": "call_0", "name": "a", "input": {"x": 1}},
        {"type": "tool_use", "id": "call_1", "name": "b", "input": {}},
    ]
    assert [(item["type"], item.get("name"), item.get("arguments")) for item in response.response["output"]] == [
        ("message", None, None),
        ("function_call", "a", '{"x": 1}'),
        ("function_call", "b", "{}"),
    ]
    assert response.assistant_message() == {
        "role": "assistant",
        "content": "Two lookups.",
        "tool_calls": [
            {"id": "call_0", "type": "function", "function": {"name": "a", "arguments": '{"x": 1}'}},
            {"id": "call_1", "type": "function", "function": {"name": "b", "arguments": "{}"}},
        ],
    }


def test_tool_arguments_that_are_not_a_json_object_are_kept_whole():
    message = MessageEvents(model="m")
    replay_completion(
        completion({"content": None, "tool_calls": [call(0, "a", "not json"), call(1, "b", "[1]")]}), message
    )

    assert [block["input"] for block in message.message()["content"]] == [{"arguments": "not json"}, {"arguments": [1]}]


def test_text_after_a_streamed_tool_call_opens_a_new_block_and_a_new_item():
    deltas = (
        {
            "tool_calls": [
                {"index": 0, "id": "call_0", "type": "function", "function": {"name": "a", "arguments": "{}"}}
            ]
        },
        {"content": "Done."},
    )

    anthropic = translated(chunk_stream(*deltas), MessageEvents(model="m"))
    responses = translated(chunk_stream(*deltas), responses_builder())

    starts = [event["content_block"]["type"] for event in anthropic if event["type"] == "content_block_start"]
    stops = [event["index"] for event in anthropic if event["type"] == "content_block_stop"]
    assert starts == ["tool_use", "text"] and stops == [0, 1]
    added = [event["item"]["type"] for event in responses if event["type"] == "response.output_item.added"]
    assert added == ["function_call", "message"]
    assert [item["type"] for item in responses[-1]["response"]["output"]] == ["function_call", "message"]


def test_arguments_streamed_before_the_calls_name_still_make_one_call():
    deltas = (
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]},
        {"tool_calls": [{"index": 0, "id": "call_0", "function": {"name": "a", "arguments": " 1}"}}]},
    )
    builder = MessageEvents(model="m")

    events = translated(chunk_stream(*deltas), builder)

    assert [event["type"] for event in events].count("content_block_start") == 1
    assert builder.message()["content"][0]["input"] == {"x": 1}


def test_a_stream_that_stops_without_its_end_is_told_as_failed():
    anthropic = translated(chunk_stream({"content": "Hal"}, finish=None, done=False), MessageEvents(model="m"))
    responses = translated(chunk_stream({"content": "Hal"}, finish=None, done=False), responses_builder())

    assert anthropic[-1]["type"] == "error" and "ended early" in anthropic[-1]["error"]["message"]
    assert responses[-1]["type"] == "response.failed"
    assert [event["type"] for event in anthropic].count("message_stop") == 0
