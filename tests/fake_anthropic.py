"""A fake of Anthropic's Messages API (``POST /v1/messages``) on a FakeUpstream, written from
its published reference: the request fields it checks, the answer's content blocks, stop
reasons and usage, the stream's event types, and the error shape
``{"type": "error", "error": {"type", "message"}}``.

What the real API refuses, this one refuses too (a missing max_tokens or anthropic-version, a
role other than user or assistant, an OpenAI-shaped message, an image block without a proper
source, a tool_result whose tool_use id the previous assistant turn does not have), so a
translation that gets the shape wrong fails its test.
"""

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.fake_upstream import FakeUpstream, Reply, Seen

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error(status: int, message: str, headers: dict | None = None) -> Reply:
    return Reply(
        status=status,
        headers=headers or {},
        json={"type": "error", "error": {"type": ERROR_TYPES[status], "message": message}},
    )


def event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


@dataclass
class AnthropicServer:
    """Answers with ``blocks`` (content blocks as the API returns them) and ``stop_reason``.

    A stream sends each text block word by word and each tool_use block's input JSON in two
    pieces; ``cut_after`` drops the connection after that many events.
    """

    api_key: str = "sk-ant-test-key"
    blocks: list[dict] = field(default_factory=lambda: [{"type": "text", "text": "Hello from Claude."}])
    stop_reason: str = "end_turn"
    input_tokens: int = 12
    output_tokens: int = 7
    cut_after: int | None = None
    error_mid_stream: bool = False
    status: int | None = None  # answer every request with this error status
    retry_after: str | None = None
    bodies: list[dict] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, upstream: FakeUpstream) -> str:
        upstream.on("/v1/messages", self.messages)
        return upstream.url()

    def messages(self, seen: Seen) -> Reply:
        if seen.headers.get("x-api-key") != self.api_key:
            return error(401, "invalid x-api-key")
        if not seen.headers.get("anthropic-version"):
            return error(400, "anthropic-version: header is required")
        try:
            body = seen.json
        except ValueError:
            return error(400, "The request body is not valid JSON.")
        with self._lock:
            self.bodies.append(body)
        if self.status is not None:
            headers = {"retry-after": self.retry_after} if self.retry_after else {}
            return error(
                self.status,
                "Number of requests has exceeded your rate limit" if self.status == 429 else "Overloaded",
                headers,
            )
        refusal = check_request(body)
        if refusal:
            return error(400, refusal)
        if body.get("stream"):
            return Reply(stream=self._events(body), cut=self.cut_after is not None)
        return Reply(
            json={
                "id": "msg_fake01",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": self.blocks,
                "stop_reason": self.stop_reason,
                "stop_sequence": None,
                "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
            }
        )

    def _events(self, body: dict) -> Iterator[bytes]:
        events = [
            event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_fake01",
                        "type": "message",
                        "role": "assistant",
                        "model": body["model"],
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": self.input_tokens, "output_tokens": 1},
                    },
                },
            ),
            event("ping", {"type": "ping"}),
        ]
        for index, block in enumerate(self.blocks):
            if block["type"] == "text":
                events.append(
                    event(
                        "content_block_start",
                        {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                    )
                )
                words = block["text"].split(" ")
                for number, word in enumerate(words):
                    text = word if number == len(words) - 1 else word + " "
                    events.append(
                        event(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": index,
                                "delta": {"type": "text_delta", "text": text},
                            },
                        )
                    )
            else:
                events.append(
                    event(
                        "content_block_start",
                        {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}},
                    )
                )
                whole = json.dumps(block["input"])
                for piece in (whole[: len(whole) // 2], whole[len(whole) // 2 :]):
                    events.append(
                        event(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": index,
                                "delta": {"type": "input_json_delta", "partial_json": piece},
                            },
                        )
                    )
            events.append(event("content_block_stop", {"type": "content_block_stop", "index": index}))
        if self.error_mid_stream:
            events.append(
                event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
            )
            events.append(b"")  # the API ends the response after an error event
        events.append(
            event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": self.output_tokens},
                },
            )
        )
        events.append(event("message_stop", {"type": "message_stop"}))
        for sent, chunk in enumerate(events):
            if self.cut_after is not None and sent == self.cut_after:
                return
            if chunk == b"":
                return
            yield chunk


def check_request(body: dict) -> str | None:
    """What the real API would refuse in ``body``, in its words, or None."""
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    for name in ("n", "stop", "tool_calls", "response_format", "max_completion_tokens"):
        if name in body:
            return f"{name}: Extra inputs are not permitted"
    system = body.get("system")
    if (
        system is not None
        and not isinstance(system, str)
        and not (isinstance(system, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in system))
    ):
        return "system: Input should be a valid string or a list of text blocks"
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        return "temperature: Input should be less than or equal to 1"
    stop = body.get("stop_sequences")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        return "stop_sequences: Input should be a valid list of strings"
    tool_names = set()
    for index, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool.get("name"), str) or not isinstance(tool.get("input_schema"), dict):
            return f"tools.{index}: name and input_schema are required"
        if set(tool) - {"name", "description", "input_schema", "type", "cache_control"}:
            return f"tools.{index}: Extra inputs are not permitted"
        tool_names.add(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        if choice.get("type") not in ("auto", "any", "tool", "none"):
            return "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'"
        if choice["type"] == "tool" and choice.get("name") not in tool_names:
            return "tool_choice.name: must name one of the tools"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: Field required"
    previous_tool_uses: set[str] = set()
    for index, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        if set(message) - {"role", "content"}:
            return f"messages.{index}: Extra inputs are not permitted"
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            return f"messages.{index}.content: Input should be a valid string or list"
        tool_uses = set()
        for number, block in enumerate(blocks):
            at = f"messages.{index}.content.{number}"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                if not isinstance(block.get("text"), str):
                    return f"{at}.text: Field required"
            elif kind == "image":
                source = block.get("source") or {}
                if source.get("type") == "base64":
                    if source.get("media_type") not in (
                        "image/jpeg",
                        "image/png",
                        "image/gif",
                        "image/webp",
                    ) or not isinstance(source.get("data"), str):
                        return f"{at}.source: media_type and data are required for a base64 source"
                elif source.get("type") == "url":
                    if not str(source.get("url", "")).startswith(("http://", "https://")):
                        return f"{at}.source.url: must be an http(s) URL"
                else:
                    return f"{at}.source.type: Input should be 'base64' or 'url'"
            elif kind == "tool_use" and role == "assistant":
                if not isinstance(block.get("id"), str) or not isinstance(block.get("input"), dict):
                    return f"{at}: tool_use needs an id, a name and an input object"
                tool_uses.add(block["id"])
            elif kind == "tool_result" and role == "user":
                if block.get("tool_use_id") not in previous_tool_uses:
                    return (
                        f"{at}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message."
                    )
            else:
                return f"{at}.type: {kind!r} is not a content block a {role} message may have"
        previous_tool_uses = tool_uses
    return None
