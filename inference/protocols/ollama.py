"""``ollama`` workers: Ollama's native chat API (``POST {base}/api/chat``).

Request: messages keep their roles (system, user, assistant, tool); image parts become the
message's ``images`` (base64 without the data URL's prefix; Ollama takes no image URL, so one is
a 400); assistant tool calls carry their arguments as an object; ``tools`` go as OpenAI wrote
them; ``tool_choice`` none drops the tools, auto keeps them, and forcing a tool (required, or a
named function) is a 400, as Ollama has no way to force one. Sampling goes in ``options``
(temperature, top_p, ``num_predict`` for max tokens, stop, seed); ``response_format`` json_object
becomes ``format: "json"``, json_schema its schema. No ``n`` (several calls).

Answer: ``message.content`` and ``message.tool_calls``; ``done_reason`` stop → stop, length →
length, and tool_calls when the message calls tools; ``prompt_eval_count``/``eval_count`` the
usage. A stream is NDJSON, one object a line, the last with ``"done": true``.
"""

import json
from typing import TYPE_CHECKING, Any

from inference import upstream
from inference.protocols.base import (
    ChatChunks,
    ChunkTranslator,
    InvalidChatRequest,
    TranslatingProtocol,
    data_url,
    event_document,
    function_tools,
    image_url,
    max_tokens_of,
    new_tool_call_id,
    stop_list,
    tool_arguments,
    unreadable,
    usage_of,
)
from inference.streaming import Framing, StreamInterrupted, StreamTranslator, UpstreamEventStream
from inference.templating import message_text

if TYPE_CHECKING:
    from registry.models import Worker

DONE_REASONS = {"stop": "stop", "length": "length"}
# Ollama's encoder writes JSON without spaces; the last line of a stream has "done":true.
FRAMING = Framing(b"\n", lambda line: b'"done":true' in line or b'"done": true' in line, '"done": true')


def _message(message: dict, index: int, call_names: dict[str, str]) -> dict:
    at = f"messages[{index}]"
    role = message.get("role")
    if role == "developer":
        role = "system"
    if role not in ("system", "user", "assistant", "tool"):
        raise InvalidChatRequest(f"{at}.role: {role!r} is not a chat role", param="messages")
    content = message.get("content")
    translated: dict[str, Any] = {"role": role, "content": message_text(content)}
    if isinstance(content, list):
        images = []
        for number, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "image_url":
                where = f"{at}.content[{number}]"
                inline = data_url(image_url(part, where), where)
                if inline is None:
                    raise InvalidChatRequest(
                        f"{where}: ollama workers take images as data URLs (data:image/png;base64,...), "
                        "not links: Ollama does not fetch URLs",
                        param="messages",
                    )
                images.append(inline[1])
            elif kind != "text":
                raise InvalidChatRequest(
                    f"{at}.content[{number}]: ollama workers take text and image_url parts, not {kind!r}",
                    param="messages",
                )
        if images:
            translated["images"] = images
    if role == "assistant" and message.get("tool_calls"):
        calls = []
        for number, call in enumerate(message["tool_calls"]):
            name = (call.get("function") or {}).get("name")
            call_names[call.get("id") or ""] = name
            calls.append({"function": {"name": name, "arguments": tool_arguments(call, f"{at}.tool_calls[{number}]")}})
        translated["tool_calls"] = calls
    if role == "tool" and message.get("tool_call_id") in call_names:
        translated["tool_name"] = call_names[message["tool_call_id"]]
    return translated


def request_body(*, model: str, chat: dict, stream: bool) -> dict:
    call_names: dict[str, str] = {}
    body: dict[str, Any] = {
        "model": model,
        "messages": [_message(message, index, call_names) for index, message in enumerate(chat["messages"])],
        "stream": stream,
    }
    tools = function_tools(chat)
    choice = chat.get("tool_choice")
    if tools and choice != "none":
        if choice not in (None, "auto"):
            raise InvalidChatRequest(
                "tool_choice: ollama workers cannot force a tool call; use auto or none", param="tool_choice"
            )
        body["tools"] = [{"type": "function", "function": tool} for tool in tools]
    options: dict[str, Any] = {}
    for name in ("temperature", "top_p", "seed"):
        if chat.get(name) is not None:
            options[name] = chat[name]
    if max_tokens_of(chat) is not None:
        options["num_predict"] = max_tokens_of(chat)
    stop = stop_list(chat)
    if stop:
        options["stop"] = stop
    if options:
        body["options"] = options
    format_ = chat.get("response_format")
    if isinstance(format_, dict):
        if format_.get("type") == "json_object":
            body["format"] = "json"
        elif format_.get("type") == "json_schema":
            schema = (format_.get("json_schema") or {}).get("schema")
            if not isinstance(schema, dict):
                raise InvalidChatRequest("response_format.json_schema.schema: is required", param="response_format")
            body["format"] = schema
    return body


def tool_calls_of(message: dict) -> list[dict]:
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        calls.append(
            {
                "id": call.get("id") or new_tool_call_id(),
                "type": "function",
                "function": {
                    "name": function.get("name"),
                    "arguments": arguments
                    if isinstance(arguments, str)
                    else json.dumps(arguments or {}, ensure_ascii=False),
                },
            }
        )
    return calls


class OllamaProtocol(TranslatingProtocol):
    kind = "ollama"
    path = "/api/chat"
    framing = FRAMING
    accept = "application/x-ndjson"

    def render(self, *, worker: "Worker", chat: dict, stream: bool) -> upstream.UpstreamRequest:
        return upstream.UpstreamRequest(
            method="POST",
            url=self.url(worker),
            headers=dict(worker.headers or {}),
            json_body=request_body(model=worker.sent_model_name, chat=chat, stream=stream),
        )

    def is_stream(self, events: UpstreamEventStream) -> bool:
        return events.content_type.startswith("application/x-ndjson")

    def parse(self, *, worker: "Worker", document: Any, url: str) -> tuple[dict, dict | None]:
        message = document.get("message") if isinstance(document, dict) else None
        if not isinstance(message, dict):
            raise unreadable(worker, url, "no message")
        calls = tool_calls_of(message)
        finish = "tool_calls" if calls else DONE_REASONS.get(document.get("done_reason"), "stop")
        one = {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": message.get("content") or (None if calls else ""),
                **({"tool_calls": calls} if calls else {}),
            },
            "finish_reason": finish,
            "logprobs": None,
        }
        return one, usage_of(document.get("prompt_eval_count"), document.get("eval_count"))

    def translator(self, *, chunks: ChatChunks, include_usage: bool, ends_stream: bool = True) -> StreamTranslator:
        return OllamaStream(chunks=chunks, include_usage=include_usage, ends_stream=ends_stream)


class OllamaStream(ChunkTranslator):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._began = False
        self._calls = 0
        self._usage: dict | None = None

    def feed(self, event: bytes) -> bytes:
        line = event_document(event, sse=False)
        if line is None:
            return b""
        if "error" in line:
            raise StreamInterrupted(f"the upstream reported: {line['error']}")
        out = b""
        if not self._began:
            self._began = True
            out += self._chunks.delta({"role": "assistant", "content": ""})
        message = line.get("message") or {}
        if message.get("content"):
            out += self._chunks.delta({"content": message["content"]})
        calls = tool_calls_of(message)
        if calls:
            # Ollama sends each call whole, in one line: one delta per call, with its index.
            for call in calls:
                out += self._chunks.delta({"tool_calls": [{**call, "index": self._calls}]})
                self._calls += 1
        if line.get("done") is True:
            finish = "tool_calls" if self._calls else DONE_REASONS.get(line.get("done_reason"), "stop")
            out += self._chunks.delta({}, finish_reason=finish)
            self._usage = usage_of(line.get("prompt_eval_count"), line.get("eval_count"))
        return out

    def usage(self) -> dict | None:
        return self._usage
