"""``tgi`` workers: Hugging Face text-generation-inference, through its Messages API
(``POST {base}/v1/chat/completions``).

TGI serves two APIs: ``/generate``/``generate_stream`` take one prompt string, so the gateway
would have to apply each model's chat template itself (which it cannot know), and have no tools
or images; the Messages API applies the model's own template on the server and speaks OpenAI's
shapes, tools (through TGI's grammar), image parts (vision models), SSE streaming ending with
``[DONE]`` and ``stream_options.include_usage`` included. So this kind is the openai kind at
``/v1`` under the base URL, except for ``n``, which TGI accepts but ignores: here it is that many
calls, whose choices are numbered in order and whose usage is added up (streamed: their streams
one after the other, as choices of one stream).
"""

import json
from typing import TYPE_CHECKING

from inference import openai_api
from inference.protocols.base import (
    JSON,
    Answer,
    Attempt,
    ChatChunks,
    added_usage,
    choice_count,
    choices_in_a_row,
    event_document,
    open_stream,
    send_whole,
    unreadable,
    wants_usage,
)
from inference.protocols.openai import CHAT_PATH, OpenAIProtocol, _whole_answer
from inference.streaming import StreamInterrupted, StreamTranslator, is_done_event, sse_event

if TYPE_CHECKING:
    from registry.models import Worker


class TGIProtocol(OpenAIProtocol):
    kind = "tgi"
    base_path = "/v1"

    def serves(self, endpoint: str) -> bool:
        return endpoint == CHAT_PATH

    def chat(self, *, worker: "Worker", chat: dict, stream: bool, attempt: Attempt) -> Answer:
        n = choice_count(chat)
        if n == 1:
            return super().chat(worker=worker, chat=chat, stream=stream, attempt=attempt)
        one = {name: value for name, value in chat.items() if name != "n"}
        request = self.request(worker, CHAT_PATH, one)
        if stream:
            translators = [ReindexedChunks(index) for index in range(n)]
            return choices_in_a_row(
                lambda index, shared: open_stream(
                    request,
                    worker=worker,
                    attempt=shared,
                    translator=translators[index],
                    on_whole=lambda whole: _whole_answer(worker, whole, request.url),
                ),
                attempt=attempt,
                translators=translators,
                chunks=ChatChunks(chat.get("model") or worker.model_name),
                include_usage=wants_usage(chat),
            )
        documents, seconds = [], 0.0
        for _ in range(n):
            answer = _whole_answer(worker, send_whole(request, worker=worker, timeout=attempt.timeout), request.url)
            if answer.status >= 300:
                return answer
            seconds += answer.upstream_seconds or 0.0
            try:
                documents.append(json.loads(answer.body))
            except ValueError:
                raise unreadable(worker, request.url, "the body is not JSON") from None
        merged = dict(documents[0])
        merged["choices"] = [{**document["choices"][0], "index": index} for index, document in enumerate(documents)]
        usage = added_usage([document.get("usage") for document in documents])
        if usage is not None:
            merged["usage"] = usage
        return Answer(
            status=200,
            content_type=JSON,
            body=openai_api.json_bytes(merged),
            upstream_seconds=seconds,
            known_usage=usage,
        )


class ReindexedChunks(StreamTranslator):
    """One of several TGI streams relayed in a row: its chunks as they came, with their choice
    renumbered; its [DONE] and usage chunk are left to the end of all of them."""

    def __init__(self, index: int):
        self._index = index
        self._usage: dict | None = None

    def feed(self, event: bytes) -> bytes:
        if is_done_event(event):
            return b""
        chunk = event_document(event)
        if chunk is None:
            return b""
        if "error" in chunk:
            raise StreamInterrupted(f"the upstream reported: {chunk['error']}")
        choices = chunk.get("choices") or []
        if not choices:
            self._usage = chunk.get("usage") if isinstance(chunk.get("usage"), dict) else self._usage
            return b""
        for choice in choices:
            choice["index"] = self._index
        return sse_event(chunk)

    def usage(self) -> dict | None:
        return self._usage

    def finish(self) -> bytes:
        return b""
