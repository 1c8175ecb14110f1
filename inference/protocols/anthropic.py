"""``anthropic`` workers: Anthropic's Messages API (``POST {base}/v1/messages``).

Request: the system and developer messages become the top-level ``system``; tool calls become
``tool_use`` blocks and ``role: tool`` results ``tool_result`` blocks in a user turn (turns of
one role in a row are merged, as the API wants them alternating); image parts become ``image``
blocks with a ``base64`` or ``url`` source; ``tools`` carry their JSON schema as
``input_schema``; ``tool_choice`` auto/required/a function/none becomes auto/any/tool/none;
``stop`` becomes ``stop_sequences``. The API requires ``max_tokens``: without one from the
client it is ``DEFAULT_MAX_TOKENS``. There is no ``n`` (several calls) and no JSON mode (a 400).

Answer: text blocks are the content, ``tool_use`` blocks the tool calls; ``stop_reason``
end_turn/stop_sequence → stop, max_tokens → length, tool_use → tool_calls;
``input_tokens``/``output_tokens`` the usage. A stream's events (message_start,
content_block_start/delta/stop with text_delta and input_json_delta, message_delta,
message_stop, ping, error) become chunks as each arrives.
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
    stop_list,
    tool_arguments,
    unreadable,
    usage_of,
)
from inference.streaming import _EVENT_END, Framing, StreamInterrupted, StreamTranslator
from inference.templating import message_text

if TYPE_CHECKING:
    from registry.models import Worker

API_VERSION = "2023-06-01"
# What max_tokens is when the client sends none (the API refuses a request without it); the
# same as the template preset this kind replaces.
DEFAULT_MAX_TOKENS = 1024
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}


def _is_message_stop(event: bytes) -> bool:
    return b"message_stop" in event and any(
        line.strip() in (b"event: message_stop", b"event:message_stop")
        or b'"type": "message_stop"' in line
        or b'"type":"message_stop"' in line
        for line in event.split(b"\n")
    )


FRAMING = Framing(_EVENT_END, _is_message_stop, "message_stop")


def _content_blocks(content: Any, where: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise InvalidChatRequest(f"{where}.content: must be a string or a list of parts", param="messages")
    blocks = []
    for index, part in enumerate(content):
        at = f"{where}.content[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text") or ""})
        elif kind == "image_url":
            url = image_url(part, at)
            inline = data_url(url, at)
            if inline:
                blocks.append(
                    {"type": "image", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
                )
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
        else:
            raise InvalidChatRequest(
                f"{at}: anthropic workers take text and image_url parts, not {kind!r}", param="messages"
            )
    return blocks


def messages_of(messages: list[dict]) -> tuple[str | None, list[dict]]:
    """(system, messages) in the Messages API's shape."""
    system: list[str] = []
    turns: list[dict] = []
    for index, message in enumerate(messages):
        at = f"messages[{index}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(message_text(message.get("content")))
            continue
        if role == "user":
            blocks = _content_blocks(message.get("content"), at)
        elif role == "assistant":
            blocks = _content_blocks(message.get("content"), at)
            for number, call in enumerate(message.get("tool_calls") or []):
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id") or f"toolu_{index}_{number}",
                        "name": (call.get("function") or {}).get("name"),
                        "input": tool_arguments(call, f"{at}.tool_calls[{number}]"),
                    }
                )
        elif role == "tool":
            role = "user"
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": message.get("tool_call_id"),
                    "content": message_text(message.get("content")),
                }
            ]
        else:
            raise InvalidChatRequest(f"{at}.role: {role!r} is not a chat role", param="messages")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return ("\n\n".join(system) if system else None), turns


def tool_choice_of(chat: dict) -> dict | None:
    choice = chat.get("tool_choice")
    parallel = chat.get("parallel_tool_calls")
    if choice is None:
        translated = {"type": "auto"} if parallel is False and chat.get("tools") else None
    elif choice == "auto":
        translated = {"type": "auto"}
    elif choice == "required":
        translated = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        translated = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise InvalidChatRequest(
            'tool_choice: must be auto, required, none or {"type": "function", ...}', param="tool_choice"
        )
    if translated is not None and parallel is False:
        translated["disable_parallel_tool_use"] = True
    return translated


def request_body(*, model: str, chat: dict, stream: bool) -> dict:
    format_ = chat.get("response_format")
    if isinstance(format_, dict) and format_.get("type") not in (None, "text"):
        raise InvalidChatRequest(
            "response_format: anthropic workers have no JSON mode; ask for JSON in the prompt, or use a tool",
            param="response_format",
        )
    system, messages = messages_of(chat["messages"])
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens_of(chat) or DEFAULT_MAX_TOKENS,
    }
    if system is not None:
        body["system"] = system
    for name in ("temperature", "top_p"):
        if chat.get(name) is not None:
            body[name] = chat[name]
    stop = stop_list(chat)
    if stop:
        body["stop_sequences"] = stop
    tools = function_tools(chat)
    if tools:
        body["tools"] = [
            {
                "name": tool["name"],
                "description": tool.get("description") or "",
                "input_schema": tool.get("parameters") or {"type": "object", "properties": {}},
            }
            for tool in tools
        ]
        choice = tool_choice_of(chat)
        if choice is not None:
            body["tool_choice"] = choice
    if stream:
        body["stream"] = True
    return body


def usage_from(usage: Any) -> dict | None:
    if not isinstance(usage, dict):
        return None
    # Tokens read from or written to the prompt cache are prompt tokens too.
    prompt = usage.get("input_tokens")
    if isinstance(prompt, int):
        prompt += sum(
            usage.get(name) or 0
            for name in ("cache_read_input_tokens", "cache_creation_input_tokens")
            if isinstance(usage.get(name), int)
        )
    return usage_of(prompt, usage.get("output_tokens"))


class AnthropicProtocol(TranslatingProtocol):
    kind = "anthropic"
    path = "/v1/messages"
    framing = FRAMING

    def render(self, *, worker: "Worker", chat: dict, stream: bool) -> upstream.UpstreamRequest:
        headers = {"anthropic-version": API_VERSION, **(worker.headers or {})}
        return upstream.UpstreamRequest(
            method="POST",
            url=self.url(worker),
            headers=headers,
            json_body=request_body(model=worker.sent_model_name, chat=chat, stream=stream),
        )

    def parse(self, *, worker: "Worker", document: Any, url: str) -> tuple[dict, dict | None]:
        if not isinstance(document, dict) or not isinstance(document.get("content"), list):
            raise unreadable(worker, url, "no content list")
        texts, calls = [], []
        for block in document["content"]:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                texts.append(block.get("text") or "")
            elif block.get("type") == "tool_use":
                calls.append(
                    {
                        "id": block.get("id"),
                        "type": "function",
                        "function": {
                            "name": block.get("name"),
                            "arguments": json.dumps(block.get("input") or {}, ensure_ascii=False),
                        },
                    }
                )
        finish = STOP_REASONS.get(document.get("stop_reason"), "stop")
        one = {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "".join(texts) if texts or not calls else None,
                **({"tool_calls": calls} if calls else {}),
            },
            "finish_reason": finish,
            "logprobs": None,
        }
        return one, usage_from(document.get("usage"))

    def translator(self, *, chunks: ChatChunks, include_usage: bool, ends_stream: bool = True) -> StreamTranslator:
        return AnthropicStream(chunks=chunks, include_usage=include_usage, ends_stream=ends_stream)


class AnthropicStream(ChunkTranslator):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._tool_index: dict[int, int] = {}  # content block index -> tool call index
        self._input_tokens: Any = None
        self._cache_tokens = 0
        self._output_tokens: Any = None

    def feed(self, event: bytes) -> bytes:
        data = event_document(event)
        if data is None:
            return b""
        kind = data.get("type")
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return self._chunks.delta({"content": delta.get("text") or ""})
            if delta.get("type") == "input_json_delta" and data.get("index") in self._tool_index:
                call = {
                    "index": self._tool_index[data["index"]],
                    "function": {"arguments": delta.get("partial_json") or ""},
                }
                return self._chunks.delta({"tool_calls": [call]})
            return b""  # thinking and signature deltas have no OpenAI chunk
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tool_index[data.get("index")] = len(self._tool_index)
                call = {
                    "index": index,
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""},
                }
                return self._chunks.delta({"tool_calls": [call]})
            if block.get("type") == "text" and block.get("text"):
                return self._chunks.delta({"content": block["text"]})
            return b""
        if kind == "message_start":
            usage = (data.get("message") or {}).get("usage") or {}
            self._input_tokens = usage.get("input_tokens")
            self._cache_tokens = sum(
                usage.get(name) or 0 for name in ("cache_read_input_tokens", "cache_creation_input_tokens")
            )
            self._output_tokens = usage.get("output_tokens")
            return self._chunks.delta({"role": "assistant", "content": ""})
        if kind == "message_delta":
            usage = data.get("usage") or {}
            if usage.get("output_tokens") is not None:
                self._output_tokens = usage["output_tokens"]
            if usage.get("input_tokens") is not None:
                self._input_tokens = usage["input_tokens"]
            reason = (data.get("delta") or {}).get("stop_reason")
            return self._chunks.delta({}, finish_reason=STOP_REASONS.get(reason, "stop"))
        if kind == "error":
            error = data.get("error") or {}
            raise StreamInterrupted(
                f"the upstream reported {error.get('type', 'an error')}: {error.get('message', '')}"
            )
        return b""  # ping, content_block_stop, message_stop

    def usage(self) -> dict | None:
        prompt = self._input_tokens + self._cache_tokens if isinstance(self._input_tokens, int) else None
        return usage_of(prompt, self._output_tokens)
