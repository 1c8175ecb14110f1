"""``openai`` workers: servers that speak the OpenAI API (OpenAI, vLLM, llama.cpp, LM Studio, ...).

Both sides speak OpenAI, so the client's request goes as it came, with only ``model`` replaced
by the worker's upstream model, and the answer (a JSON body or an event stream) comes back as it
came: nothing is parsed on the way, which keeps this kind's cost to the copy of the body.
"""

from typing import TYPE_CHECKING, Any

from inference import extract, redaction, upstream
from inference.exceptions import ExtractionFailed
from inference.extract import PathMismatch
from inference.outcomes import Outcome
from inference.protocols.base import (
    JSON,
    Answer,
    Attempt,
    Completed,
    checked_document,
    open_stream,
    path_steps,
    raise_if_worker_failed,
    refused_answer,
    secrets_of,
    send_whole,
    where,
)

if TYPE_CHECKING:
    from registry.models import Worker

# Where an OpenAI-compatible server puts the answer of a chat completion.
CHAT_PATH = "/chat/completions"
CHAT_EXTRACT = "choices[0].message.content"
_CHAT_STEPS = extract.parse_path(CHAT_EXTRACT)


def endpoint_url(worker: "Worker", path: str) -> str:
    """The URL of one OpenAI endpoint (``/chat/completions``, ...) under the worker's base URL."""
    # Before any query string: some servers want one on every call (?api-version=...).
    base, question, query = worker.req_url_template.partition("?")
    return base.rstrip("/") + path + question + query


class OpenAIProtocol:
    kind = "openai"
    base_path = ""  # between the base URL and the endpoint path

    def serves(self, endpoint: str) -> bool:
        return True

    def request(self, worker: "Worker", path: str, body: dict) -> upstream.UpstreamRequest:
        return upstream.UpstreamRequest(
            method="POST",
            url=endpoint_url(worker, self.base_path + path),
            headers=dict(worker.headers or {}),
            json_body={**body, "model": worker.sent_model_name},
        )

    def chat(self, *, worker: "Worker", chat: dict, stream: bool, attempt: Attempt) -> Answer:
        return self.passthrough(worker=worker, endpoint=CHAT_PATH, body=chat, stream=stream, attempt=attempt)

    def passthrough(self, *, worker: "Worker", endpoint: str, body: dict, stream: bool, attempt: Attempt) -> Answer:
        request = self.request(worker, endpoint, body)
        if not stream:
            return _whole_answer(worker, send_whole(request, worker=worker, timeout=attempt.timeout), request.url)
        return open_stream(
            request,
            worker=worker,
            attempt=attempt,
            on_whole=lambda whole: _whole_answer(worker, whole, request.url),
        )

    def seed_request(self, *, worker: "Worker", prompt: str, temperature: float | None) -> upstream.UpstreamRequest:
        body: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}]}
        if temperature is not None:
            body["temperature"] = temperature
        return self.request(worker, CHAT_PATH, body)

    def seed_result(self, *, worker: "Worker", response: upstream.UpstreamResponse) -> Completed:
        url = endpoint_url(worker, self.base_path + CHAT_PATH)
        document = checked_document(worker, response, url)
        steps = path_steps(worker.response_extract) if worker.response_extract else _CHAT_STEPS
        try:
            result = extract.apply_path(document, steps, path=worker.response_extract or CHAT_EXTRACT)
        except PathMismatch as exc:
            raise ExtractionFailed(f"{where(worker, url)}: {exc}", path=exc.path, failed_at=exc.at) from None
        usage = document.get("usage") if isinstance(document, dict) else None
        return Completed(
            result=result, upstream_seconds=response.seconds, usage=usage if isinstance(usage, dict) else None
        )

    def complete(self, *, worker: "Worker", prompt: str, temperature: float | None, timeout: float) -> Completed:
        request = self.seed_request(worker=worker, prompt=prompt, temperature=temperature)
        return self.seed_result(worker=worker, response=send_whole(request, worker=worker, timeout=timeout))


def _whole_answer(worker: "Worker", response: upstream.UpstreamResponse, url: str) -> Answer:
    raise_if_worker_failed(response, worker=worker, url=url)
    if 200 <= response.status < 300:
        return Answer(
            status=response.status,
            content_type=response.content_type or JSON,
            body=response.content,
            upstream_seconds=response.seconds,
        )
    # The request itself was refused (400 for a bad parameter, 404 for an unknown upstream
    # model, ...): the client gets the upstream's status and error, with the worker's keys masked.
    is_json, document = response.json_or_text()
    if is_json and isinstance(document, dict) and "error" in document:
        body = redaction.mask_secrets(response.content.decode("utf-8", errors="replace"), secrets=secrets_of(worker))
        return refused_as_is(response.status, body.encode())
    return refused_answer(worker, response, url)


def refused_as_is(status: int, body: bytes) -> Answer:
    return Answer(status=status, content_type=JSON, body=body, outcome=Outcome.REJECTED)
