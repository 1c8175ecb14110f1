"""A fake of text-generation-inference's Messages API (``POST /v1/chat/completions``) on a
FakeUpstream, written from TGI's reference (its OpenAPI document and router/src/lib.rs): OpenAI's
chat shapes, ``n`` accepted and ignored (one choice), tools answered as ``tool_calls``, SSE
streaming ending with ``data: [DONE]`` and a usage chunk with ``stream_options.include_usage``,
errors as ``{"error": "...", "error_type": "..."}`` (422 for a request that does not validate).
"""

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.fake_upstream import FakeUpstream, Reply, Seen


def _sse(document: dict | str) -> bytes:
    return f"data: {document if isinstance(document, str) else json.dumps(document)}\n\n".encode()


@dataclass
class TGIServer:
    content: str = "Hello from TGI."
    tool_call: dict | None = None  # {"name": ..., "arguments": {...}} to answer with a tool call
    cut_after: int | None = None
    status: int | None = None
    bodies: list[dict] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _calls: int = 0

    def install(self, upstream: FakeUpstream) -> str:
        upstream.on("/v1/chat/completions", self.chat)
        return upstream.url()

    def chat(self, seen: Seen) -> Reply:
        try:
            body = seen.json
        except ValueError:
            return Reply(status=422, json={"error": "Failed to deserialize the JSON body", "error_type": "validation"})
        with self._lock:
            self.bodies.append(body)
            self._calls += 1
            call_number = self._calls
        if self.status is not None:
            return Reply(status=self.status, json={"error": "Model is overloaded", "error_type": "overloaded"})
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return Reply(
                status=422,
                json={"error": "Failed to deserialize: missing field `messages`", "error_type": "validation"},
            )
        created = 1728000000
        content = f"{self.content} (call {call_number})"
        usage = {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}
        calls = None
        if self.tool_call and body.get("tools"):
            calls = [
                {
                    "id": "0",
                    "type": "function",
                    "function": {"name": self.tool_call["name"], "arguments": json.dumps(self.tool_call["arguments"])},
                }
            ]
        if body.get("stream"):
            include_usage = (body.get("stream_options") or {}).get("include_usage") is True
            return Reply(
                stream=self._chunks(content, calls, usage if include_usage else None), cut=self.cut_after is not None
            )
        message = {"role": "assistant", "content": None if calls else content}
        if calls:
            message["tool_calls"] = calls
        return Reply(
            json={
                "object": "chat.completion",
                "id": "",
                "created": created,
                "model": "tgi",
                "system_fingerprint": "3.0.0-native",
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": "tool_calls" if calls else "stop",
                    }
                ],
                "usage": usage,
            }
        )

    def _chunks(self, content: str, calls: list | None, usage: dict | None) -> Iterator[bytes]:
        base = {
            "object": "chat.completion.chunk",
            "id": "",
            "created": 1728000000,
            "model": "tgi",
            "system_fingerprint": "3.0.0-native",
        }
        chunks = []
        if calls:
            call = calls[0]
            arguments = call["function"]["arguments"]
            chunks.append(
                {
                    "index": 0,
                    "delta": {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["function"]["name"], "arguments": ""},
                            }
                        ],
                    },
                    "finish_reason": None,
                }
            )
            for piece in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
                chunks.append(
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "tool_calls": [{"index": 0, "function": {"arguments": piece}}]},
                        "finish_reason": None,
                    }
                )
            finish = "tool_calls"
        else:
            for word in content.split(" "):
                chunks.append(
                    {"index": 0, "delta": {"role": "assistant", "content": word + " "}, "finish_reason": None}
                )
            finish = "stop"
        chunks.append({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": finish})
        events = [_sse({**base, "choices": [chunk]}) for chunk in chunks]
        if usage:
            events.append(_sse({**base, "choices": [], "usage": usage}))
        events.append(_sse("[DONE]"))
        for sent, event in enumerate(events):
            if self.cut_after is not None and sent == self.cut_after:
                return
            yield event
