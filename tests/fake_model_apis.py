"""A fake OpenAI-compatible server on a FakeUpstream (the other kinds' fakes are
tests/fake_anthropic.py, tests/fake_ollama.py and tests/fake_tgi.py).

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
        return Reply(
            json={
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1700000000,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(self.words)},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": 5,
                    "completion_tokens": len(self.words),
                    "total_tokens": 5 + len(self.words),
                },
            }
        )

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
        return Reply(
            json={
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": 1700000000,
                "model": body["model"],
                "choices": [
                    {"index": 0, "text": f"completed: {body.get('prompt')}", "finish_reason": "stop", "logprobs": None}
                ],
            }
        )

    def embeddings(self, seen: Seen) -> Reply:
        body, error = self._checked(seen)
        if error:
            return error
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        return Reply(
            json={
                "object": "list",
                "model": body["model"],
                "data": [
                    {"object": "embedding", "index": i, "embedding": [float(len(text)), 0.5, -1.0]}
                    for i, text in enumerate(inputs)
                ],
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            }
        )

    def images(self, seen: Seen) -> Reply:
        body, error = self._checked(seen)
        if error:
            return error
        return Reply(json={"created": 1700000000, "data": [{"url": f"http://images.example/{body.get('prompt')}.png"}]})
