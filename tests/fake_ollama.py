"""A fake of Ollama's native chat API (``POST /api/chat``) on a FakeUpstream, written from its
published reference (docs/api.md of ollama/ollama): the request's messages (role, content,
``images`` as base64, ``tool_calls`` with arguments as an object, ``tool_name``), ``tools``,
``format``, ``options``, ``stream`` (true unless false); the answer's ``message``,
``done``/``done_reason`` and ``prompt_eval_count``/``eval_count``; a stream as NDJSON
(``application/x-ndjson``), one object a line, the last with ``"done": true``; errors as
``{"error": "..."}``.
"""

import base64
import binascii
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.fake_upstream import FakeUpstream, Reply, Seen


def _line(document: dict) -> bytes:
    # Ollama's Go encoder writes compact JSON.
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


@dataclass
class OllamaServer:
    """Answers with ``content`` and ``tool_calls`` (as Ollama returns them) and ``done_reason``.
    A stream sends the content word by word, then the tool calls in one line, then the last
    line; ``cut_after`` drops the connection after that many lines."""

    models: tuple[str, ...] = ("llama3.2",)
    content: str = "Hello from Ollama."
    tool_calls: list[dict] = field(default_factory=list)
    done_reason: str = "stop"
    prompt_eval_count: int = 26
    eval_count: int = 9
    cut_after: int | None = None
    error_mid_stream: bool = False
    status: int | None = None
    bodies: list[dict] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, upstream: FakeUpstream) -> str:
        upstream.on("/api/chat", self.chat)
        return upstream.url()

    def chat(self, seen: Seen) -> Reply:
        try:
            body = seen.json
        except ValueError:
            return Reply(status=400, json={"error": "invalid character looking for beginning of value"})
        with self._lock:
            self.bodies.append(body)
        if self.status is not None:
            return Reply(
                status=self.status, json={"error": "server busy, please try again. maximum pending requests exceeded"}
            )
        if body.get("model") not in self.models:
            return Reply(status=404, json={"error": f'model "{body.get("model")}" not found, try pulling it first'})
        refusal = check_request(body)
        if refusal:
            return Reply(status=400, json={"error": refusal})
        created = "2024-07-22T20:33:28.123648Z"
        if body.get("stream", True):
            return Reply(
                stream=self._lines(body["model"], created),
                cut=self.cut_after is not None,
                headers={"Content-Type": "application/x-ndjson"},
            )
        message = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return Reply(
            json={
                "model": body["model"],
                "created_at": created,
                "message": message,
                "done": True,
                "done_reason": self.done_reason,
                "total_duration": 5191566416,
                "load_duration": 2154458,
                "prompt_eval_count": self.prompt_eval_count,
                "prompt_eval_duration": 383809000,
                "eval_count": self.eval_count,
                "eval_duration": 4799921000,
            }
        )

    def _lines(self, model: str, created: str) -> Iterator[bytes]:
        lines = []
        words = self.content.split(" ") if self.content else []
        for number, word in enumerate(words):
            text = word if number == len(words) - 1 else word + " "
            lines.append(
                _line(
                    {
                        "model": model,
                        "created_at": created,
                        "message": {"role": "assistant", "content": text},
                        "done": False,
                    }
                )
            )
        if self.tool_calls:
            lines.append(
                _line(
                    {
                        "model": model,
                        "created_at": created,
                        "message": {"role": "assistant", "content": "", "tool_calls": self.tool_calls},
                        "done": False,
                    }
                )
            )
        if self.error_mid_stream:
            lines.append(_line({"error": "an error was encountered while running the model"}))
        lines.append(
            _line(
                {
                    "model": model,
                    "created_at": created,
                    "message": {"role": "assistant", "content": ""},
                    "done": True,
                    "done_reason": self.done_reason,
                    "prompt_eval_count": self.prompt_eval_count,
                    "eval_count": self.eval_count,
                }
            )
        )
        for sent, line in enumerate(lines):
            if self.cut_after is not None and sent == self.cut_after:
                return
            yield line
            if self.error_mid_stream and b'"error"' in line:
                return


def check_request(body: dict) -> str | None:
    """What Ollama would refuse in ``body``, or None."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return "messages: required"
    for index, message in enumerate(messages):
        if message.get("role") not in ("system", "user", "assistant", "tool"):
            return f"messages[{index}]: invalid role {message.get('role')!r}"
        if not isinstance(message.get("content", ""), str):
            return "json: cannot unmarshal array into Go struct field Message.messages.content of type string"
        for image in message.get("images") or []:
            try:
                base64.b64decode(image, validate=True)
            except (binascii.Error, ValueError, TypeError):
                return "illegal base64 data in images"
        for call in message.get("tool_calls") or []:
            if not isinstance((call.get("function") or {}).get("arguments"), dict):
                return (
                    "json: cannot unmarshal string into Go struct field "
                    "ToolCallFunction.messages.tool_calls.function.arguments of type api.ToolCallFunctionArguments"
                )
    for tool in body.get("tools") or []:
        if tool.get("type") != "function" or not isinstance((tool.get("function") or {}).get("name"), str):
            return 'tools: each tool must be {"type": "function", "function": {...}}'
    options = body.get("options") or {}
    if set(options) - {"temperature", "top_p", "top_k", "num_predict", "stop", "seed", "num_ctx"}:
        return f"invalid option(s): {sorted(set(options) - {'temperature', 'top_p', 'num_predict', 'stop', 'seed'})}"
    return None
