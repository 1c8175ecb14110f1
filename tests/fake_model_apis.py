"""Fake model servers that speak real APIs' request and response shapes, on a FakeUpstream.

Each checks what a real server of that API would refuse (a missing required field, a wrong
header, a role the API does not know) and answers in that API's success or error shape, so a
preset or a passthrough that gets the shape wrong fails its test.
"""

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.fake_upstream import FakeUpstream, Reply, Seen


def sse(document: dict | str) -> bytes:
    data = document if isinstance(document, str) else json.dumps(document)
    return f"data: {data}\n\n".encode()


def _text(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


def _openai_error(status: int, message: str, code: str, error_type: str = "invalid_request_error") -> Reply:
    return Reply(status=status, json={"error": {"message": message, "type": error_type, "param": None, "code": code}})


@dataclass
class OpenAIServer:
    """An OpenAI-compatible server at ``/v1``: chat completions (streamed or not), completions,
    embeddings, image generations. The chat answer is ``words`` joined; a stream sends one
    word per chunk, and waits on ``release`` (when set) after ``hold_after`` chunks."""

    models: tuple[str, ...] = ("up-model",)
    words: tuple[str, ...] = ("Hello", " from", " the", " fake", " server", ".")
    release: threading.Event | None = None
    hold_after: int = 1
    released_in_time: bool | None = None  # whether ``release`` was set before the wait gave up
    cut_after: int | None = None  # drop the connection after this many chunks
    pause: float = 0.0  # seconds between chunks
    bodies: list[dict] = field(default_factory=list)

    def install(self, upstream: FakeUpstream) -> str:
        """Route this server's endpoints on ``upstream``; returns its base URL."""
        upstream.on("/v1/chat/completions", self.chat)
        upstream.on("/v1/completions", self.completions)
        upstream.on("/v1/embeddings", self.embeddings)
        upstream.on("/v1/images/generations", self.images)
        return upstream.url("/v1")

    def _checked(self, seen: Seen) -> tuple[dict | None, Reply | None]:
        try:
            body = seen.json
        except ValueError:
            return None, _openai_error(400, "We could not parse the JSON body of your request.", "invalid_json")
        self.bodies.append(body)
        if body.get("model") not in self.models:
            return None, _openai_error(404, f"The model `{body.get('model')}` does not exist", "model_not_found")
        return body, None

    def chat(self, seen: Seen) -> Reply:
        body, error = self._checked(seen)
        if error:
            return error
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return _openai_error(400, "'messages' is a required property", "invalid_value")
        if body.get("stream"):
            return Reply(stream=self._chunks(body["model"]), cut=self.cut_after is not None)
        return Reply(json={
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(self.words)},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 5, "completion_tokens": len(self.words), "total_tokens": 5 + len(self.words)},
        })

    def _chunks(self, model: str) -> Iterator[bytes]:
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000, "model": model}
        deltas = [{"role": "assistant", "content": ""}, *({"content": word} for word in self.words)]
        for sent, delta in enumerate(deltas):
            if self.cut_after is not None and sent == self.cut_after:
                return
            if self.release is not None and sent == self.hold_after:
                self.released_in_time = self.release.wait(10)
            if self.pause and sent:
                threading.Event().wait(self.pause)
            yield sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        yield sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        yield sse("[DONE]")

    def completions(self, seen: Seen) -> Reply:
        body, error = self._checked(seen)
        if error:
            return error
        return Reply(json={
            "id": "cmpl-fake", "object": "text_completion", "created": 1700000000, "model": body["model"],
            "choices": [{"index": 0, "text": f"completed: {body.get('prompt')}", "finish_reason": "stop",
                         "logprobs": None}],
        })

    def embeddings(self, seen: Seen) -> Reply:
        body, error = self._checked(seen)
        if error:
            return error
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        return Reply(json={
            "object": "list", "model": body["model"],
            "data": [{"object": "embedding", "index": i, "embedding": [float(len(text)), 0.5, -1.0]}
                     for i, text in enumerate(inputs)],
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        })

    def images(self, seen: Seen) -> Reply:
        body, error = self._checked(seen)
        if error:
            return error
        return Reply(json={"created": 1700000000, "data": [{"url": f"http://images.example/{body.get('prompt')}.png"}]})


def anthropic_messages(api_key: str):
    """POST /v1/messages as Anthropic's messages API: x-api-key and anthropic-version headers,
    max_tokens required, only user and assistant roles, the system prompt a top-level field."""

    def error(status: int, error_type: str, message: str) -> Reply:
        return Reply(status=status, json={"type": "error", "error": {"type": error_type, "message": message}})

    def answer(seen: Seen) -> Reply:
        if seen.headers.get("x-api-key") != api_key:
            return error(401, "authentication_error", "invalid x-api-key")
        if not seen.headers.get("anthropic-version"):
            return error(400, "invalid_request_error", "anthropic-version: header is required")
        body = seen.json
        if not isinstance(body.get("max_tokens"), int):
            return error(400, "invalid_request_error", "max_tokens: Field required")
        messages = body.get("messages")
        if not messages or any(message.get("role") not in ("user", "assistant") for message in messages):
            return error(400, "invalid_request_error", "messages: roles must be user or assistant")
        if "system" in body and not isinstance(body["system"], str):
            return error(400, "invalid_request_error", "system: must be a string")
        text = f"system={body.get('system')!r} last={_text(messages[-1]['content'])!r} max_tokens={body['max_tokens']}"
        return Reply(json={
            "id": "msg_fake", "type": "message", "role": "assistant", "model": body.get("model"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5},
        })

    return answer


def ollama_chat(seen: Seen) -> Reply:
    """POST /api/chat as Ollama's native API: without "stream": false it would stream NDJSON."""
    body = seen.json
    if body.get("stream") is not False:
        return Reply(status=400, json={"error": "this fake only answers stream: false"})
    if not body.get("model") or not isinstance(body.get("messages"), list):
        return Reply(status=400, json={"error": "model and messages are required"})
    text = f"{len(body['messages'])} messages, last: {_text(body['messages'][-1]['content'])}"
    return Reply(json={
        "model": body["model"], "created_at": "2024-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": text}, "done": True, "done_reason": "stop",
    })


def tgi_generate(seen: Seen) -> Reply:
    """POST /generate as text-generation-inference: "inputs" and optional "parameters"."""
    body = seen.json
    if not isinstance(body.get("inputs"), str):
        return Reply(status=422, json={"error": "Failed to deserialize: missing field `inputs`", "error_type": "validation"})
    parameters = body.get("parameters", {})
    return Reply(json={"generated_text": f"generated for {body['inputs']!r} with {sorted(parameters)}"})
