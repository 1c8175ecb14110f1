"""A fake OpenAI chat-completions server that calls tools, whole and streamed, as OpenAI's
reference describes: a tool call's id, type and name come in its first delta, its arguments
in fragments after it, the finish reason is ``tool_calls``, and with
``stream_options.include_usage`` a last chunk with empty ``choices`` carries the usage.

The conversation decides the answer: a request with tools whose last message is not a tool
result gets a call of its first tool with ``arguments``; any other gets text that quotes the
last tool result (or the last user text), so a test can follow a whole tool round trip.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.fake_model_apis import sse
from tests.fake_upstream import FakeUpstream, Reply, Seen

PROMPT_TOKENS, COMPLETION_TOKENS = 21, 9


@dataclass
class ToolCallingServer:
    model: str = "up-model"
    arguments: dict = field(default_factory=lambda: {"city": "Paris", "unit": "celsius"})
    call_id: str = "call_fake_1"
    bodies: list[dict] = field(default_factory=list)

    def install(self, upstream: FakeUpstream) -> str:
        upstream.on("/v1/chat/completions", self.chat)
        return upstream.url("/v1")

    def chat(self, seen: Seen) -> Reply:
        body = seen.json
        self.bodies.append(body)
        if body.get("model") != self.model:
            return Reply(
                status=404,
                json={
                    "error": {
                        "message": f"The model `{body.get('model')}` does not exist",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "model_not_found",
                    }
                },
            )
        if "stream_options" in body and not body.get("stream"):
            return Reply(
                status=400,
                json={
                    "error": {
                        "message": "stream_options is only allowed when stream is true",
                        "type": "invalid_request_error",
                        "param": "stream_options",
                        "code": None,
                    }
                },
            )
        messages = body["messages"]
        calls_tool = bool(body.get("tools")) and messages[-1]["role"] != "tool" and body.get("tool_choice") != "none"
        text = None if calls_tool else self.reply_text(messages)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return Reply(stream=self._chunks(body, text, include_usage))
        message = {"role": "assistant", "content": text}
        if calls_tool:
            message["tool_calls"] = [
                {
                    "id": self.call_id,
                    "type": "function",
                    "function": {"name": self._tool_name(body), "arguments": json.dumps(self.arguments)},
                }
            ]
        return Reply(
            json={
                "id": "chatcmpl-tools",
                "object": "chat.completion",
                "created": 1700000000,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if calls_tool else "stop",
                        "logprobs": None,
                    }
                ],
                "usage": self._usage(),
            }
        )

    @staticmethod
    def reply_text(messages: list[dict]) -> str:
        last = messages[-1]
        if last["role"] == "tool":
            return f"The tool said: {last['content']}"
        content = last["content"]
        if isinstance(content, list):
            content = " ".join(part.get("text", f"<{part['type']}>") for part in content)
        return f"You said: {content}"

    def _tool_name(self, body: dict) -> str:
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            return choice["function"]["name"]
        return body["tools"][0]["function"]["name"]

    def _usage(self) -> dict:
        return {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        }

    def _chunks(self, body: dict, text: str | None, include_usage: bool) -> Iterator[bytes]:
        base = {"id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": 1700000000, "model": self.model}

        def chunk(delta: dict, finish: str | None = None) -> bytes:
            return sse({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

        if text is None:
            yield chunk(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": self.call_id,
                            "type": "function",
                            "function": {"name": self._tool_name(body), "arguments": ""},
                        }
                    ],
                }
            )
            arguments = json.dumps(self.arguments)
            for start in range(0, len(arguments), 7):
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[start : start + 7]}}]})
            yield chunk({}, "tool_calls")
        else:
            yield chunk({"role": "assistant", "content": ""})
            for word in text.split(" "):
                yield chunk({"content": word if word == text.split(" ")[0] else f" {word}"})
            yield chunk({}, "stop")
        if include_usage:
            yield sse({**base, "choices": [], "usage": self._usage()})
        yield sse("[DONE]")
