"""The OpenAI Responses API (POST /v1/responses) over the request path's OpenAI chat.

``chat_request`` turns a Responses request (string or item input, instructions, function tools,
function_call / function_call_output items) into a chat body; ``ResponseEvents`` turns the chat
answer back, into a whole ``response`` object or the Responses stream (response.created,
response.in_progress, response.output_item.added, response.content_part.added,
response.output_text.delta / .done, response.function_call_arguments.delta / .done,
response.content_part.done, response.output_item.done, response.completed), chunk by chunk,
each event with its ``sequence_number``.
"""

import time
import uuid
from collections.abc import Callable
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

_ROLES = ("user", "assistant", "system", "developer")
# finish_reason values that leave a response incomplete, and the reason Responses gives.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def chat_request(body: dict, *, previous: list[dict]) -> tuple[dict, list[dict]]:
    """The chat body for one Responses request, and the messages its own input became.

    ``previous`` is the stored conversation ``previous_response_id`` names (its instructions
    are not carried over, as in OpenAI's API: each request gives its own).
    """
    chat: dict[str, Any] = {"model": a_string(required(body, "model"), "model", allow_empty=False)}
    source = required(body, "input")
    new = [{"role": "user", "content": source}] if isinstance(source, str) else _input_messages(source)
    system = []
    if body.get("instructions") is not None:
        system = [{"role": "system", "content": a_string(body["instructions"], "instructions")}]
    chat["messages"] = [*system, *previous, *new]
    if not previous and not new:
        raise BadRequest("input", "must not be empty")
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = a_number(body[name], name, minimum=0)
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = a_whole_number(body["max_output_tokens"], "max_output_tokens")
    # 0, "" or false is not a list of tools either: refused, not read as none.
    if body.get("tools") is not None and a_list(body["tools"], "tools"):
        chat["tools"] = [
            {"type": "function", "function": _function(tool, at("tools", i))}
            for i, tool in enumerate(a_list(body["tools"], "tools"))
        ]
        if body.get("tool_choice") is not None:
            chat["tool_choice"] = _tool_choice(body["tool_choice"])
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = a_bool(body["parallel_tool_calls"], "parallel_tool_calls")
    response_format = _response_format(body.get("text"))
    if response_format:
        chat["response_format"] = response_format
    for name in ("user", "safety_identifier"):
        if body.get(name) is not None:
            chat["user"] = a_string(body[name], name)
    if body.get("stream") is not None and a_bool(body["stream"], "stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # response.completed carries the usage
    return chat, new


def echoed_fields(body: dict, *, store: bool) -> dict:
    """What a Response object repeats of its request."""
    return {
        "model": body["model"],
        "instructions": body.get("instructions"),
        "tools": [
            {
                "type": "function",
                "strict": tool.get("strict", True),
                "description": tool.get("description"),
                "name": tool["name"],
                "parameters": tool.get("parameters"),
            }
            for tool in body.get("tools") or ()
        ],
        "tool_choice": body.get("tool_choice") or "auto",
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_output_tokens": body.get("max_output_tokens"),
        "previous_response_id": body.get("previous_response_id"),
        "store": store,
        "metadata": body.get("metadata") or {},
        "text": body.get("text") or {"format": {"type": "text"}},
        "truncation": "disabled",
        "user": body.get("user"),
    }


def _input_messages(items: Any) -> list[dict]:
    messages: list[dict] = []
    for index, item in enumerate(a_list(items, "input")):
        where = at("input", index)
        item = a_dict(item, where)
        kind = item.get("type", "message")
        if kind == "message":
            role = one_of(item.get("role"), at(where, "role"), _ROLES)
            content = _content(required(item, "content", where), at(where, "content"), role)
            messages.append({"role": "system" if role == "developer" else role, "content": content})
        elif kind == "function_call":
            call = {
                "id": a_string(required(item, "call_id", where), at(where, "call_id"), allow_empty=False),
                "type": "function",
                "function": {
                    "name": a_string(required(item, "name", where), at(where, "name")),
                    "arguments": a_string(required(item, "arguments", where), at(where, "arguments")),
                },
            }
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)  # the calls of one assistant turn
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = required(item, "output", where)
            if not isinstance(output, str):
                output = "".join(
                    _text_part(part, at(at(where, "output"), i), ("input_text",))
                    for i, part in enumerate(a_list(output, at(where, "output")))
                )
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": a_string(required(item, "call_id", where), at(where, "call_id")),
                    "content": output,
                }
            )
        elif kind == "reasoning":
            continue  # a model's earlier reasoning, which a chat API has no place for
        else:
            raise BadRequest(
                at(where, "type"),
                f"input items of type {kind!r} are not supported here; this gateway "
                "translates message, function_call and function_call_output"[:300],
            )
    return messages


def _content(content: Any, where: str, role: str) -> Any:
    if isinstance(content, str):
        return content
    parts = a_list(content, where)
    if role == "assistant":  # earlier output: its text is the content
        return "".join(
            _text_part(part, at(where, i), ("output_text", "input_text", "refusal")) for i, part in enumerate(parts)
        )
    translated = []
    for index, part in enumerate(parts):
        part_where = at(where, index)
        part = a_dict(part, part_where)
        if part.get("type") == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise BadRequest(
                    at(part_where, "image_url"), "must be an image URL or a data: URL (file_id is not supported)"
                )
            image = {"url": url}
            if part.get("detail") is not None:
                image["detail"] = one_of(part["detail"], at(part_where, "detail"), ("auto", "low", "high"))
            translated.append({"type": "image_url", "image_url": image})
        else:
            translated.append({"type": "text", "text": _text_part(part, part_where, ("input_text",))})
    # One text part is plain content, as most OpenAI-compatible servers expect.
    return translated[0]["text"] if len(translated) == 1 and translated[0]["type"] == "text" else translated


def _text_part(part: Any, where: str, kinds: tuple[str, ...]) -> str:
    part = a_dict(part, where)
    kind = one_of(part.get("type"), at(where, "type"), kinds)
    return a_string(required(part, "refusal" if kind == "refusal" else "text", where), at(where, "text"))


def _function(tool: Any, where: str) -> dict:
    tool = a_dict(tool, where)
    if tool.get("type") != "function":
        raise BadRequest(
            at(where, "type"),
            f"tools of type {tool.get('type')!r} are not supported; "
            "give function tools (type function, name, parameters)"[:300],
        )
    function: dict[str, Any] = {"name": a_string(required(tool, "name", where), at(where, "name"), allow_empty=False)}
    if tool.get("parameters") is not None:
        function["parameters"] = a_dict(tool["parameters"], at(where, "parameters"))
    if tool.get("description") is not None:
        function["description"] = a_string(tool["description"], at(where, "description"))
    if tool.get("strict") is not None:
        function["strict"] = a_bool(tool["strict"], at(where, "strict"))
    return function


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return one_of(choice, "tool_choice", ("auto", "none", "required"))
    choice = a_dict(choice, "tool_choice")
    one_of(choice.get("type"), "tool_choice.type", ("function",))
    return {
        "type": "function",
        "function": {"name": a_string(required(choice, "name", "tool_choice"), "tool_choice.name")},
    }


def _response_format(text: Any) -> dict | None:
    if text is None:
        return None
    form = a_dict(text, "text").get("format")
    if form is None:
        return None
    form = a_dict(form, "text.format")
    kind = one_of(form.get("type"), "text.format.type", ("text", "json_object", "json_schema"))
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    schema = {
        "name": a_string(required(form, "name", "text.format"), "text.format.name"),
        "schema": a_dict(required(form, "schema", "text.format"), "text.format.schema"),
    }
    if form.get("strict") is not None:
        schema["strict"] = a_bool(form["strict"], "text.format.strict")
    return {"type": "json_schema", "json_schema": schema}


class ResponseEvents:
    """Builds one Response object from the chat answer's events, and says each step as a
    Responses stream event (``sse`` serialises one). ``on_complete(response)`` runs when the
    response is complete (or incomplete), before its last event goes out: where it is stored."""

    def __init__(self, *, echoed: dict, on_complete: Callable[[dict], None] | None = None):
        self.id = f"resp_{uuid.uuid4().hex}"
        self.created_at = int(time.time())
        self._echoed = echoed
        self._on_complete = on_complete
        self._items: list[dict] = []
        self._pieces: list[list[str]] = []  # per item: its text, or its arguments
        self._open: int | None = None
        self._tool_items: dict[int, int] = {}  # OpenAI tool-call index -> output index
        self._finish: str | None = None
        self._usage: dict | None = None
        self._sequence = 0
        self.response: dict | None = None  # once done

    def start(self) -> list:
        snapshot = self._snapshot("in_progress")
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def text(self, delta: str) -> list:
        out = []
        if self._open is None or self._items[self._open]["type"] != "message":
            out = self._close()
            out += self._begin(
                {
                    "type": "message",
                    "id": f"msg_{uuid.uuid4().hex}",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                }
            )
            out.append(
                self._event(
                    "response.content_part.added",
                    item_id=self._items[self._open]["id"],
                    output_index=self._open,
                    content_index=0,
                    part=_output_text(""),
                )
            )
        self._pieces[self._open].append(delta)
        return [
            *out,
            self._event(
                "response.output_text.delta",
                item_id=self._items[self._open]["id"],
                output_index=self._open,
                content_index=0,
                delta=delta,
                logprobs=[],
            ),
        ]

    def tool_call(self, index: int, call_id: str, name: str) -> list:
        if index in self._tool_items:  # some servers repeat the id or name in later chunks
            return []
        out = self._close() + self._begin(
            {
                "type": "function_call",
                "id": f"fc_{uuid.uuid4().hex}",
                "call_id": call_id or f"call_{uuid.uuid4().hex}",
                "name": name,
                "arguments": "",
                "status": "in_progress",
            }
        )
        self._tool_items[index] = self._open
        return out

    def tool_arguments(self, index: int, delta: str) -> list:
        out = [] if index in self._tool_items else self.tool_call(index, "", "")
        item = self._tool_items[index]
        self._pieces[item].append(delta)
        return [
            *out,
            self._event(
                "response.function_call_arguments.delta",
                item_id=self._items[item]["id"],
                output_index=item,
                delta=delta,
            ),
        ]

    def finish(self, reason: str | None, stop_sequence: str | None) -> list:
        self._finish = reason
        return []

    def usage(self, usage: dict) -> list:
        prompt, completion = token_count(usage.get("prompt_tokens")), token_count(usage.get("completion_tokens"))
        cached = token_count((usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
        reasoning = token_count((usage.get("completion_tokens_details") or {}).get("reasoning_tokens"))
        self._usage = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + completion,
        }
        return []

    def done(self) -> list:
        out = self._close()
        incomplete = _INCOMPLETE.get(self._finish or "")
        self.response = self._snapshot("incomplete" if incomplete else "completed")
        if incomplete:
            self.response["incomplete_details"] = {"reason": incomplete}
        if self._on_complete is not None:
            self._on_complete(self.response)
        return [
            *out,
            self._event("response.incomplete" if incomplete else "response.completed", response=self.response),
        ]

    def failed(self, message: str, code: str) -> list:
        snapshot = self._snapshot("failed")
        snapshot["error"] = {"code": "server_error", "message": message}
        return [self._event("response.failed", response=snapshot)]

    def assistant_message(self) -> dict:
        """The output as the chat message a later turn's conversation holds."""
        text = "".join(
            "".join(pieces) for item, pieces in zip(self._items, self._pieces, strict=True) if item["type"] == "message"
        )
        calls = [
            {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": "".join(pieces)},
            }
            for item, pieces in zip(self._items, self._pieces, strict=True)
            if item["type"] == "function_call"
        ]
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            message["tool_calls"] = calls
        return message

    def _snapshot(self, status: str) -> dict:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            **self._echoed,
            "output": [self._finished(index) for index in range(len(self._items))],
            "usage": self._usage,
            "error": None,
            "incomplete_details": None,
        }

    def _event(self, kind: str, **fields) -> dict:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def _begin(self, item: dict) -> list:
        self._items.append(item)
        self._pieces.append([])
        self._open = len(self._items) - 1
        return [self._event("response.output_item.added", output_index=self._open, item=dict(item))]

    def _close(self) -> list:
        if self._open is None:
            return []
        index, self._open = self._open, None
        item = self._items[index]
        item["status"] = "completed"
        done = self._finished(index)
        if item["type"] == "message":
            text = done["content"][0]["text"]
            out = [
                self._event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=text,
                    logprobs=[],
                ),
                self._event(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=_output_text(text),
                ),
            ]
        else:
            out = [
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=done["arguments"],
                )
            ]
        return [*out, self._event("response.output_item.done", output_index=index, item=done)]

    def _finished(self, index: int) -> dict:
        item, text = self._items[index], "".join(self._pieces[index])
        if item["type"] == "message":
            return {**item, "content": [_output_text(text)]}
        return {**item, "arguments": text}


def _output_text(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
