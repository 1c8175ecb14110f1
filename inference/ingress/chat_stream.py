"""Reading the request path's OpenAI answer, whole or streamed, as neutral events for an ingress
API's translator.

A translator (``ChatEvents``) is told, in order: ``text`` and ``tool_call`` /
``tool_arguments`` deltas as they arrive, the ``finish`` reason, ``usage`` if the upstream
reported it, then ``done()`` — or ``failed()`` if the stream broke. Each call returns the
client's events for it (dicts its API module serialises), so a stream is translated chunk by
chunk as it arrives, and a whole answer goes through the very same calls.
"""

import json
from collections.abc import Callable, Iterator
from typing import Any, Protocol

_EVENT_END = b"\n\n"


class ChatEvents(Protocol):
    def start(self) -> list: ...
    def text(self, delta: str) -> list: ...
    def tool_call(self, index: int, call_id: str, name: str) -> list: ...
    def tool_arguments(self, index: int, delta: str) -> list: ...
    def finish(self, reason: str | None, stop_sequence: str | None) -> list: ...
    def usage(self, usage: dict) -> list: ...
    def done(self) -> list: ...
    def failed(self, message: str, code: str) -> list: ...


def replay_completion(completion: dict, events: ChatEvents) -> list:
    """A whole chat.completion told to ``events`` as if it had been streamed (first choice)."""
    out = events.start()
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content = message.get("content")
    if isinstance(content, str) and content:
        out += events.text(content)
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        out += events.tool_call(index, call.get("id") or "", function.get("name") or "")
        if function.get("arguments"):
            out += events.tool_arguments(index, function["arguments"])
    out += events.finish(choice.get("finish_reason"), _matched_stop(choice))
    if isinstance(completion.get("usage"), dict):
        out += events.usage(completion["usage"])
    return out + events.done()


def chunk_events(chunk: dict, events: ChatEvents) -> list:
    """One chat.completion.chunk told to ``events`` (only choice 0: these APIs have no ``n``)."""
    out = []
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta") or {}
        if isinstance(delta.get("content"), str) and delta["content"]:
            out += events.text(delta["content"])
        for call in delta.get("tool_calls") or ():
            index = call.get("index", 0)
            function = call.get("function") or {}
            if call.get("id") or function.get("name"):
                out += events.tool_call(index, call.get("id") or "", function.get("name") or "")
            if function.get("arguments"):
                out += events.tool_arguments(index, function["arguments"])
        if choice.get("finish_reason"):
            out += events.finish(choice["finish_reason"], _matched_stop(choice))
    if isinstance(chunk.get("usage"), dict):
        out += events.usage(chunk["usage"])
    return out


def _matched_stop(choice: dict) -> str | None:
    # vLLM and SGLang say which stop string ended the text; the OpenAI API does not.
    matched = choice.get("stop_reason")
    return matched if isinstance(matched, str) else None


class TranslatedStream:
    """The client's stream: the request path's OpenAI event stream, translated as it arrives.

    ``close()`` (the WSGI server's, when the response is done or the client has gone) closes the
    source too, which closes the upstream connection and settles the attempt.
    """

    def __init__(self, source: Iterator[bytes], events: ChatEvents, serialise: Callable[[Any], bytes]):
        self._source = source
        self._chunks = self._translate(events, serialise)

    def __iter__(self) -> "TranslatedStream":
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()
        close = getattr(self._source, "close", None)
        if close is not None:
            close()

    def _translate(self, events: ChatEvents, serialise: Callable[[Any], bytes]) -> Iterator[bytes]:
        yield b"".join(map(serialise, events.start()))
        buffer, ended = b"", False
        # The source is read to its end even after [DONE], so the relay settles the attempt as
        # answered rather than as abandoned by the client.
        for data in self._source:
            buffer += data.replace(b"\r\n", b"\n")
            *complete, buffer = buffer.split(_EVENT_END)
            out = []
            for raw in complete:
                if ended:
                    continue
                document = _event_data(raw)
                if document is None:
                    continue
                if document == "[DONE]":
                    out += events.done()
                    ended = True
                elif isinstance(document, dict) and isinstance(document.get("error"), dict):
                    error = document["error"]
                    out += events.failed(
                        str(error.get("message") or "the model's stream failed"),
                        str(error.get("code") or "stream_interrupted"),
                    )
                    ended = True
                elif isinstance(document, dict):
                    out += chunk_events(document, events)
            if out:
                yield b"".join(map(serialise, out))
        if not ended:
            yield b"".join(
                map(
                    serialise, events.failed("the model's stream ended early, without its [DONE]", "stream_interrupted")
                )
            )


def named_sse(event: dict) -> bytes:
    """One event as Anthropic's and OpenAI's Responses streams send it: ``event:`` names its
    ``type``, ``data:`` holds it."""
    return b"event: %s\ndata: %s\n\n" % (event["type"].encode(), json.dumps(event, ensure_ascii=False).encode("utf-8"))


def token_count(value: Any) -> int:
    """A token count as reported, or 0 where the upstream gave none (or nonsense)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _event_data(raw: bytes) -> Any:
    lines = [line[5:].lstrip() for line in raw.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    data = b"\n".join(lines)
    if data.strip() == b"[DONE]":
        return "[DONE]"
    try:
        return json.loads(data)
    except ValueError:
        return None
