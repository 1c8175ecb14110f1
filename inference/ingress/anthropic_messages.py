"""The Anthropic Messages API (POST /v1/messages) over the request path's OpenAI chat.

``chat_request`` turns a Messages request into an OpenAI chat body; ``MessageEvents`` turns the
chat answer back, into a whole ``message`` or Anthropic's stream events (message_start, ping,
content_block_start / _delta / _stop, message_delta, message_stop), chunk by chunk.
"""

import json
import uuid
from typing import Any

from inference.ingress.chat_stream import token_count
from inference.ingress.checks import (
    BadRequest,
    a_bool,
    a_dict,
    a_list,
    a_number,
    a_string,
    a_whole_number,
    at,
    one_of,
    required,
)

_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
# OpenAI's finish_reason -> Anthropic's stop_reason.
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# Anthropic's error types by status (its API reference); other 4xx are invalid_request_error.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_body(*, status: int, message: str) -> dict:
    error_type = _ERROR_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")
    return {"type": "error", "error": {"type": error_type, "message": message}}


def chat_request(body: Any) -> dict:
    """The OpenAI chat body for one Messages request; BadRequest names the first bad field."""
    body = a_dict(body, "body")
    chat: dict[str, Any] = {
        "model": a_string(required(body, "model"), "model", allow_empty=False),
        "max_tokens": a_whole_number(required(body, "max_tokens"), "max_tokens"),
        "messages": [],
    }
    if body.get("system") is not None:
        chat["messages"].append({"role": "system", "content": _system_text(body["system"])})
    for index, message in enumerate(a_list(required(body, "messages"), "messages", allow_empty=False)):
        chat["messages"] += _chat_messages(message, at("messages", index))
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = a_number(body[name], name, minimum=0)
    if body.get("stop_sequences") is not None:
        chat["stop"] = [
            a_string(stop, at("stop_sequences", i))
            for i, stop in enumerate(a_list(body["stop_sequences"], "stop_sequences"))
        ]
    # 0, "" or false is not a list of tools either: refused, not read as none.
    if body.get("tools") is not None and a_list(body["tools"], "tools"):
        chat["tools"] = [_tool(tool, at("tools", i)) for i, tool in enumerate(a_list(body["tools"], "tools"))]
        if body.get("tool_choice") is not None:
            chat.update(_tool_choice(body["tool_choice"]))
    metadata = body.get("metadata")
    if metadata is not None and a_dict(metadata, "metadata").get("user_id") is not None:
        chat["user"] = a_string(metadata["user_id"], "metadata.user_id")
    if body.get("stream") is not None and a_bool(body["stream"], "stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # message_delta carries the usage
    return chat


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    blocks = a_list(system, "system")
    return "\n\n".join(_text_block(block, at("system", i)) for i, block in enumerate(blocks))


def _text_block(block: Any, where: str) -> str:
    block = a_dict(block, where)
    if block.get("type") != "text":
        raise BadRequest(at(where, "type"), f"must be 'text' here, not {block.get('type')!r}")
    return a_string(required(block, "text", where), at(where, "text"))


def _chat_messages(message: Any, where: str) -> list[dict]:
    """One Anthropic message as OpenAI messages: a user message's tool_result blocks become
    ``tool`` messages (first, as Anthropic requires them first), its other blocks one user message."""
    message = a_dict(message, where)
    role = one_of(message.get("role"), at(where, "role"), ("user", "assistant"))
    content = required(message, "content", where)
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    blocks = a_list(content, at(where, "content"))
    if role == "assistant":
        return [_assistant_message(blocks, at(where, "content"))]
    tool_messages, parts = [], []
    for index, block in enumerate(blocks):
        block_where = at(at(where, "content"), index)
        block = a_dict(block, block_where)
        kind = block.get("type")
        if kind == "tool_result":
            tool_messages.append(_tool_result(block, block_where))
        elif kind == "text":
            parts.append({"type": "text", "text": _text_block(block, block_where)})
        elif kind == "image":
            parts.append(_image_part(block, block_where))
        else:
            raise BadRequest(at(block_where, "type"), _unsupported_block(kind, "text, image and tool_result"))
    if not parts:
        return tool_messages
    # One text block is plain content, as most OpenAI-compatible servers expect.
    content = parts[0]["text"] if len(parts) == 1 and parts[0]["type"] == "text" else parts
    return [*tool_messages, {"role": "user", "content": content}]


def _assistant_message(blocks: list, where: str) -> dict:
    texts, calls = [], []
    for index, block in enumerate(blocks):
        block_where = at(where, index)
        block = a_dict(block, block_where)
        kind = block.get("type")
        if kind == "text":
            texts.append(_text_block(block, block_where))
        elif kind == "tool_use":
            arguments = a_dict(required(block, "input", block_where), at(block_where, "input"))
            calls.append(
                {
                    "id": a_string(required(block, "id", block_where), at(block_where, "id")),
                    "type": "function",
                    "function": {
                        "name": a_string(required(block, "name", block_where), at(block_where, "name")),
                        "arguments": json.dumps(arguments, ensure_ascii=False),
                    },
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # a model's earlier reasoning, which a chat API has no place for
        else:
            raise BadRequest(at(block_where, "type"), _unsupported_block(kind, "text, tool_use and thinking"))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_result(block: dict, where: str) -> dict:
    call_id = a_string(required(block, "tool_use_id", where), at(where, "tool_use_id"))
    content = block.get("content", "")
    if not isinstance(content, str):
        parts = a_list(content, at(where, "content"))
        content = "".join(_text_block(part, at(at(where, "content"), i)) for i, part in enumerate(parts))
    if block.get("is_error") is not None:
        a_bool(block["is_error"], at(where, "is_error"))
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def _image_part(block: dict, where: str) -> dict:
    source = a_dict(required(block, "source", where), at(where, "source"))
    kind = one_of(source.get("type"), at(at(where, "source"), "type"), ("base64", "url"))
    if kind == "url":
        url = a_string(required(source, "url", at(where, "source")), at(at(where, "source"), "url"), allow_empty=False)
    else:
        media_type = one_of(source.get("media_type"), at(at(where, "source"), "media_type"), _IMAGE_TYPES)
        data = a_string(
            required(source, "data", at(where, "source")), at(at(where, "source"), "data"), allow_empty=False
        )
        url = f"data:{media_type};base64,{data}"
    return {"type": "image_url", "image_url": {"url": url}}


def _unsupported_block(kind: Any, supported: str) -> str:
    return f"content blocks of type {kind!r} are not supported here; this gateway translates {supported}"[:300]


def _tool(tool: Any, where: str) -> dict:
    tool = a_dict(tool, where)
    if tool.get("type") not in (None, "custom"):
        raise BadRequest(
            at(where, "type"),
            f"server tool {tool.get('type')!r} is not supported; give client tools (name, description, input_schema)"[
                :300
            ],
        )
    function: dict[str, Any] = {
        "name": a_string(required(tool, "name", where), at(where, "name"), allow_empty=False),
        "parameters": a_dict(required(tool, "input_schema", where), at(where, "input_schema")),
    }
    if tool.get("description") is not None:
        function["description"] = a_string(tool["description"], at(where, "description"))
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> dict:
    choice = a_dict(choice, "tool_choice")
    kind = one_of(choice.get("type"), "tool_choice.type", ("auto", "any", "tool", "none"))
    chat: dict[str, Any] = {"tool_choice": {"auto": "auto", "any": "required", "none": "none"}.get(kind)}
    if kind == "tool":
        name = a_string(required(choice, "name", "tool_choice"), "tool_choice.name", allow_empty=False)
        chat["tool_choice"] = {"type": "function", "function": {"name": name}}
    if choice.get("disable_parallel_tool_use") is not None and kind != "none":
        chat["parallel_tool_calls"] = not a_bool(
            choice["disable_parallel_tool_use"], "tool_choice.disable_parallel_tool_use"
        )
    return chat


class MessageEvents:
    """Builds one assistant ``message`` from the chat answer's events, and says each step as
    Anthropic's stream events (dicts with ``type``; ``sse`` serialises one)."""

    def __init__(self, *, model: str):
        self.id = f"msg_{uuid.uuid4().hex}"
        self.model = model
        self._blocks: list[dict] = []
        self._pieces: list[list[str]] = []  # per block: its text, or its tool input's JSON
        self._open: int | None = None
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool-call index -> block index
        self._finish: str | None = None
        self._stop_sequence: str | None = None
        self._usage = {"input_tokens": 0, "output_tokens": 0}

    def start(self) -> list:
        return [
            {"type": "message_start", "message": self._message(content=[], stop_reason=None, stop_sequence=None)},
            {"type": "ping"},
        ]

    def text(self, delta: str) -> list:
        out = []
        if self._open is None or self._blocks[self._open]["type"] != "text":
            out = self._close() + self._begin({"type": "text", "text": ""})
        self._pieces[self._open].append(delta)
        return [
            *out,
            {"type": "content_block_delta", "index": self._open, "delta": {"type": "text_delta", "text": delta}},
        ]

    def tool_call(self, index: int, call_id: str, name: str) -> list:
        if index in self._tool_blocks:  # some servers repeat the id or name in later chunks
            return []
        out = self._close() + self._begin(
            {"type": "tool_use", "id": call_id or f"toolu_{uuid.uuid4().hex}", "name": name, "input": {}}
        )
        self._tool_blocks[index] = self._open
        return out

    def tool_arguments(self, index: int, delta: str) -> list:
        out = [] if index in self._tool_blocks else self.tool_call(index, "", "")
        block = self._tool_blocks[index]
        self._pieces[block].append(delta)
        return [
            *out,
            {
                "type": "content_block_delta",
                "index": block,
                "delta": {"type": "input_json_delta", "partial_json": delta},
            },
        ]

    def finish(self, reason: str | None, stop_sequence: str | None) -> list:
        self._finish, self._stop_sequence = reason, stop_sequence
        return []

    def usage(self, usage: dict) -> list:
        self._usage = {
            "input_tokens": token_count(usage.get("prompt_tokens")),
            "output_tokens": token_count(usage.get("completion_tokens")),
        }
        return []

    def done(self) -> list:
        return [
            *self._close(),
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": self._stop_sequence},
                "usage": dict(self._usage),
            },
            {"type": "message_stop"},
        ]

    def failed(self, message: str, code: str) -> list:
        return [error_body(status=500, message=message)]

    @property
    def stop_reason(self) -> str:
        if self._finish == "stop" and self._stop_sequence:
            return "stop_sequence"
        if self._finish is None and self._tool_blocks:
            return "tool_use"
        return _STOP_REASONS.get(self._finish or "stop", "end_turn")

    def message(self) -> dict:
        """The whole message, once ``done()``."""
        content = []
        for block, pieces in zip(self._blocks, self._pieces, strict=True):
            if block["type"] == "text":
                content.append({"type": "text", "text": "".join(pieces)})
            else:
                content.append({**block, "input": _tool_input("".join(pieces))})
        return self._message(content=content, stop_reason=self.stop_reason, stop_sequence=self._stop_sequence)

    def _message(self, *, content: list, stop_reason: str | None, stop_sequence: str | None) -> dict:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": dict(self._usage),
        }

    def _begin(self, block: dict) -> list:
        self._blocks.append(block)
        self._pieces.append([])
        self._open = len(self._blocks) - 1
        return [{"type": "content_block_start", "index": self._open, "content_block": block}]

    def _close(self) -> list:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [{"type": "content_block_stop", "index": index}]


def _tool_input(arguments: str) -> dict:
    """A tool call's arguments as the object Anthropic's ``input`` is; arguments that are not
    a JSON object (a model's mistake) are kept whole under ``arguments`` rather than lost."""
    if not arguments.strip():
        return {}
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return {"arguments": arguments}
    return parsed if isinstance(parsed, dict) else {"arguments": parsed}
