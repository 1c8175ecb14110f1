"""The ingress translations' own cost, in process: ``python -m bench.ingress``.

For /v1/messages and /v1/responses: a request with a system prompt, three turns and a tool is
translated into a chat body; a whole chat.completion (text and a tool call) is translated back
into the API's answer and serialised; a stream of CHUNKS chat.completion.chunk events (one word
each, then the finish and the usage) is translated into the API's events. No network, no
database: only what the translation adds to a request. Prints a markdown table of microseconds
per request (median of REPEATS runs of ROUNDS requests each).
"""

import json
import statistics
import time

import django

CHUNKS, ROUNDS, REPEATS = 200, 500, 5
TOOL_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
COMPLETION = {
    "id": "chatcmpl-b",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": "Let me check the weather for you. " * 4,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
        }
    ],
    "usage": {"prompt_tokens": 40, "completion_tokens": 30, "total_tokens": 70},
}


def _sse(document) -> bytes:
    return b"data: " + (document if isinstance(document, bytes) else json.dumps(document).encode()) + b"\n\n"


def _stream_events() -> list[bytes]:
    base = {"id": "chatcmpl-b", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events = [
        _sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
    ]
    events += [
        _sse({**base, "choices": [{"index": 0, "delta": {"content": f" word{i}"}, "finish_reason": None}]})
        for i in range(CHUNKS)
    ]
    events.append(_sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    events.append(_sse({**base, "choices": [], "usage": COMPLETION["usage"]}))
    return [*events, _sse(b"[DONE]")]


def _per_request_us(run) -> float:
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(ROUNDS):
            run()
        samples.append((time.perf_counter() - started) / ROUNDS * 1e6)
    return statistics.median(samples)


def main() -> None:
    django.setup()
    from inference.ingress import anthropic_messages, responses
    from inference.ingress.chat_stream import TranslatedStream, named_sse, replay_completion

    messages_body = {
        "model": "m",
        "max_tokens": 256,
        "system": "Be brief.",
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": TOOL_SCHEMA}],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]},
        ],
    }
    responses_body = {
        "model": "m",
        "instructions": "Be brief.",
        "max_output_tokens": 256,
        "tools": [{"type": "function", "name": "get_weather", "parameters": TOOL_SCHEMA}],
        "input": [
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": "t1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
            {"type": "function_call_output", "call_id": "t1", "output": "sunny"},
        ],
    }
    body_bytes, events = json.dumps(COMPLETION).encode(), _stream_events()

    def whole(api: str) -> None:
        if api == "messages":
            chat = anthropic_messages.chat_request(messages_body)
            builder = anthropic_messages.MessageEvents(model=chat["model"])
        else:
            chat, _ = responses.chat_request(responses_body, previous=[])
            builder = responses.ResponseEvents(echoed=responses.echoed_fields(responses_body, store=False))
        replay_completion(json.loads(body_bytes), builder)
        json.dumps(builder.message() if api == "messages" else builder.response)

    def streamed(api: str) -> None:
        if api == "messages":
            chat = anthropic_messages.chat_request({**messages_body, "stream": True})
            builder = anthropic_messages.MessageEvents(model=chat["model"])
        else:
            responses.chat_request({**responses_body, "stream": True}, previous=[])
            builder = responses.ResponseEvents(echoed=responses.echoed_fields(responses_body, store=False))
        for _ in TranslatedStream(iter(events), builder, named_sse):
            pass

    def passthrough() -> None:  # what a /v1/chat/completions answer costs to parse and re-serialise
        json.dumps(json.loads(body_bytes))

    print(f"| translation (in process, µs per request) | whole | streamed ({CHUNKS} chunks) |")
    print("|---|---|---|")
    print(f"| json.loads + json.dumps of the chat answer (reference) | {_per_request_us(passthrough):.0f} | |")
    for api, path in (("messages", "/v1/messages"), ("responses", "/v1/responses")):
        print(
            f"| `{path}` | {_per_request_us(lambda api=api: whole(api)):.0f} | {_per_request_us(lambda api=api: streamed(api)):.0f} |"
        )


if __name__ == "__main__":
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmm.settings")
    main()
