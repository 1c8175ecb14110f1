"""``tgi`` workers: Hugging Face text-generation-inference, through its Messages API
(``POST {base}/v1/chat/completions``).

TGI serves two APIs: ``/generate``/``generate_stream`` take one prompt string, so the gateway
would have to apply each model's chat template itself (which it cannot know), and have no tools
or images; the Messages API applies the model's own template on the server and speaks OpenAI's
shapes, tools (through TGI's grammar), image parts (vision models), SSE streaming ending with
``[DONE]`` and ``stream_options.include_usage`` included. So this kind is the openai kind at
``/v1`` under the base URL, except for ``n``, which TGI accepts but ignores: here it is that many
calls, whose choices are numbered in order and whose usage is added up.
"""

import json
from typing import TYPE_CHECKING

from inference import openai_api
from inference.protocols.base import (
    JSON,
    Answer,
    Attempt,
    InvalidChatRequest,
    added_usage,
    choice_count,
    send_whole,
    unreadable,
)
from inference.protocols.openai import CHAT_PATH, OpenAIProtocol, _whole_answer

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
        if stream:
            raise InvalidChatRequest("n: tgi workers make one answer per call, so n above 1 is answered whole only "
                                     "(send stream: false)", param="n")
        one = {name: value for name, value in chat.items() if name != "n"}
        request = self.request(worker, CHAT_PATH, one)
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
        return Answer(status=200, content_type=JSON, body=openai_api.json_bytes(merged), upstream_seconds=seconds,
                      known_usage=usage)
