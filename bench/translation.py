"""The translation's own cost, in-process: ``python -m bench.translation``.

For each worker kind, the work its protocol does on one request besides the wire: building the
upstream request from a neutral chat (a system prompt, two turns, one tool) and turning the
upstream's whole answer into a ``chat.completion`` body; and, for a stream, turning 20 text
events plus the kind's start and end events into ``chat.completion.chunk`` events. No server
runs: the upstream answers are bytes made here in each API's shape, the timings are of the
protocol code alone (median of several rounds, microseconds per request).
"""

import argparse
import json
import os
import statistics
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmm.settings")
django.setup()

from inference.protocols import PROTOCOLS  # noqa: E402
from inference.protocols.base import ChatChunks  # noqa: E402
from inference.protocols.openai import OpenAIProtocol, _whole_answer  # noqa: E402
from inference.protocols.template import TemplateProtocol, render_request  # noqa: E402
from inference.upstream import UpstreamResponse  # noqa: E402
from registry.models import Worker  # noqa: E402

WORDS = [f"word{number} " for number in range(20)]
TEXT = "".join(WORDS)
CHAT = {
    "model": "bench",
    "temperature": 0.2,
    "max_tokens": 64,
    "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "What is the weather?"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ],
}
STREAM_CHAT = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}


def _response(document: dict) -> UpstreamResponse:
    return UpstreamResponse(
        status=200, content=json.dumps(document).encode(), content_type="application/json", seconds=0.001
    )


def _sse(name: str | None, document: dict | str) -> bytes:
    data = document if isinstance(document, str) else json.dumps(document)
    return (f"event: {name}\n" if name else "").encode() + f"data: {data}\n\n".encode()


OPENAI_ANSWER = {
    "id": "x",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 20, "total_tokens": 29},
}
ANSWERS = {
    "openai": OPENAI_ANSWER,
    "tgi": OPENAI_ANSWER,
    "anthropic": {
        "id": "msg",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": TEXT}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 9, "output_tokens": 20},
    },
    "ollama": {
        "model": "m",
        "created_at": "2024-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": TEXT},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 9,
        "eval_count": 20,
    },
    "template": {"data": {"items": [{"attributes": {"answer": TEXT}}]}},
}
STREAMS = {
    "anthropic": [
        _sse("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1}}}),
        _sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        *(
            _sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}},
            )
            for word in WORDS
        ),
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _sse(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 20}},
        ),
        _sse("message_stop", {"type": "message_stop"}),
    ],
    "ollama": [
        *(
            json.dumps(
                {"model": "m", "message": {"role": "assistant", "content": word}, "done": False}, separators=(",", ":")
            ).encode()
            + b"\n"
            for word in WORDS
        ),
        json.dumps(
            {
                "model": "m",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 9,
                "eval_count": 20,
            },
            separators=(",", ":"),
        ).encode()
        + b"\n",
    ],
}


def workers() -> dict[str, Worker]:
    base = {"req_url_template": "http://127.0.0.1:9", "headers": {"x-api-key": "k"}, "model_name": "bench", "id": 1}
    return {
        "template": Worker(
            kind="template",
            body={"input": "{USER_PROMPT}", "model": "{MODEL_NAME}"},
            response_extract="data.items[].attributes.answer",
            **base,
        ),
        "openai": Worker(kind="openai", **base),
        "anthropic": Worker(kind="anthropic", **base),
        "ollama": Worker(kind="ollama", **base),
        "tgi": Worker(kind="tgi", **base),
    }


def whole_once(kind: str, worker: Worker) -> None:
    protocol = PROTOCOLS[kind]
    response = _response(ANSWERS[kind])
    if isinstance(protocol, TemplateProtocol):
        render_request(worker, messages=CHAT["messages"], temperature=0.2, max_tokens=64)
        protocol.seed_result(worker=worker, response=response)
    elif isinstance(protocol, OpenAIProtocol):
        request = protocol.request(worker, "/chat/completions", CHAT)
        _whole_answer(worker, response, request.url)
    else:
        request = protocol.render(worker=worker, chat=CHAT, stream=False)
        protocol._whole_answer(worker, [response], request.url, "bench")


def stream_once(kind: str, worker: Worker) -> None:
    protocol = PROTOCOLS[kind]
    protocol.render(worker=worker, chat=STREAM_CHAT, stream=True)
    translator = protocol.translator(chunks=ChatChunks("bench"), include_usage=True)
    for event in STREAMS[kind]:
        translator.feed(event)
    translator.finish()


def measure(function, *args, rounds: int, per_round: int) -> float:
    """Median microseconds per call over ``rounds`` rounds of ``per_round`` calls."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(per_round):
            function(*args)
        samples.append((time.perf_counter() - started) / per_round * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=500)
    args = parser.parse_args()
    by_kind = workers()
    print("| kind | whole answer: request + answer (µs) | stream: request + 23 events (µs) |")
    print("|---|---|---|")
    for kind, worker in by_kind.items():
        whole = measure(whole_once, kind, worker, rounds=args.rounds, per_round=args.per_round)
        if kind in STREAMS:
            streamed = f"{measure(stream_once, kind, worker, rounds=args.rounds, per_round=args.per_round):.1f}"
        elif kind in ("openai", "tgi"):
            streamed = "0 (events relayed as they came)"
        else:
            streamed = "— (the whole answer, cut into 3 chunks)"
        print(f"| {kind} | {whole:.1f} | {streamed} |")


if __name__ == "__main__":
    main()
