"""``template`` workers: the seed's model servers, called by a body template and read by a path.

The request is the worker's stored template filled from the chat (``inference.templating``);
the answer is what ``response_extract`` points at, and the token counts what the optional
``usage_extract`` points at. Such a server has no stream, no tools and no ``n`` of its own, so
a /v1 stream is the whole answer cut into chunks, ``n`` is several calls, and tools are not
offered to the model (it answers in text; a client that forces a tool call gets a 400).
"""

from typing import TYPE_CHECKING, Any

from inference import extract, openai_api, templating, upstream
from inference.exceptions import ExtractionFailed, UpstreamRejected
from inference.extract import PathMismatch
from inference.protocols.base import (
    EVENT_STREAM,
    JSON,
    Answer,
    Attempt,
    ChatChunks,
    Completed,
    InvalidChatRequest,
    added_usage,
    chat_completion,
    choice,
    choice_count,
    max_tokens_of,
    path_steps,
    raise_if_worker_failed,
    send_whole,
    usage_of,
    wants_usage,
    where,
)
from inference.streaming import DONE_EVENT

if TYPE_CHECKING:
    from registry.models import Worker

# The names token counts go by in the APIs a template worker may front, as (prompt, completion).
_USAGE_NAMES = (
    ("prompt_tokens", "completion_tokens"),  # OpenAI
    ("input_tokens", "output_tokens"),  # Anthropic
    ("prompt_eval_count", "eval_count"),  # Ollama
)


def render_request(
    worker: "Worker", *, messages: list[dict], temperature: float | None, max_tokens: int | None
) -> upstream.UpstreamRequest:
    """The upstream request for one chat; the stored template is left as it is.

    {USER_PROMPT} is the last user message's text; {MESSAGES} the chat as it came.
    """
    values: dict[str, Any] = {
        **templating.chat_values(messages),
        templating.MODEL_TEMPERATURE: temperature,
        templating.MODEL_NAME: worker.sent_model_name,
        templating.MAX_TOKENS: max_tokens,
    }
    return upstream.UpstreamRequest(
        method=worker.method,
        url=templating.render_url(worker.req_url_template, values),
        headers=dict(worker.headers or {}),
        json_body=templating.render_body(worker.body, values) if worker.body is not None else None,
    )


def extract_answer(worker: "Worker", document: Any) -> Any:
    """What ``response_extract`` points at in the upstream's answer (raises PathMismatch)."""
    return extract.apply_path(document, path_steps(worker.response_extract), path=worker.response_extract)


def extract_usage(worker: "Worker", document: Any) -> dict | None:
    """The token counts ``usage_extract`` points at, in OpenAI's names; None when it is unset or
    does not match (usage is a report, never a reason to fail an answer)."""
    if not worker.usage_extract:
        return None
    try:
        found = extract.apply_path(document, path_steps(worker.usage_extract), path=worker.usage_extract)
    except PathMismatch:
        return None
    if not isinstance(found, dict):
        return None
    for prompt_name, completion_name in _USAGE_NAMES:
        usage = usage_of(found.get(prompt_name), found.get(completion_name))
        if usage is not None:
            return usage
    return None


class TemplateProtocol:
    kind = "template"

    def serves(self, endpoint: str) -> bool:
        return endpoint == "/chat/completions"

    def call(
        self,
        *,
        worker: "Worker",
        messages: list[dict],
        temperature: float | None,
        max_tokens: int | None,
        timeout: float,
    ) -> Completed:
        request = render_request(worker, messages=messages, temperature=temperature, max_tokens=max_tokens)
        return self.seed_result(worker=worker, response=send_whole(request, worker=worker, timeout=timeout))

    def chat(self, *, worker: "Worker", chat: dict, stream: bool, attempt: Attempt) -> Answer:
        # A body template has no place for tools: the model answers in text, which is a valid
        # answer when the client lets it choose (tool_choice auto), and not one when it demands a call.
        if chat.get("tools") and chat.get("tool_choice") not in (None, "auto", "none"):
            raise InvalidChatRequest(
                f"tool_choice: model {worker.model_name!r} is served by template workers, whose body template has "
                "no place for tools, so no tool call can be forced; register the server with a preset of its API "
                "(openai, anthropic, ollama, tgi) to use tools",
                param="tool_choice",
            )
        model = chat.get("model") or worker.model_name
        answers = [
            self.call(
                worker=worker,
                messages=chat["messages"],
                temperature=chat.get("temperature"),
                max_tokens=max_tokens_of(chat),
                timeout=attempt.timeout,
            )
            for _ in range(choice_count(chat))
        ]
        usage = added_usage([answer.usage for answer in answers])
        seconds = sum(answer.upstream_seconds for answer in answers)
        if stream:
            return Answer(
                status=200,
                content_type=EVENT_STREAM,
                upstream_seconds=seconds,
                known_usage=usage,
                stream=iter(_chunks(model, answers, usage, include_usage=wants_usage(chat))),
            )
        choices = [
            choice(index=index, content=openai_api.answer_text(answer.result), tool_calls=None, finish_reason="stop")
            for index, answer in enumerate(answers)
        ]
        body = chat_completion(model=model, choices=choices, usage=usage)
        return Answer(
            status=200, content_type=JSON, body=openai_api.json_bytes(body), upstream_seconds=seconds, known_usage=usage
        )

    def passthrough(self, *, worker: "Worker", endpoint: str, body: dict, stream: bool, attempt: Attempt) -> Answer:
        raise InvalidChatRequest(f"template workers answer /v1/chat/completions only, not /v1{endpoint}")

    def seed_request(self, *, worker: "Worker", prompt: str, temperature: float | None) -> upstream.UpstreamRequest:
        return render_request(
            worker, messages=[{"role": "user", "content": prompt}], temperature=temperature, max_tokens=None
        )

    def seed_result(self, *, worker: "Worker", response: upstream.UpstreamResponse) -> Completed:
        raise_if_worker_failed(response, worker=worker, url=worker.req_url_template)
        at = where(worker, worker.req_url_template)
        if not 200 <= response.status < 300:
            raise UpstreamRejected(
                f"{at} refused the request with HTTP {response.status}: {response.snippet(secrets=worker.secret_values())}",
                upstream_status=response.status,
            )
        is_json, document = response.json_or_text()
        usage = extract_usage(worker, document) if is_json else None
        if not worker.response_extract:
            return Completed(result=document, upstream_seconds=response.seconds, usage=usage)
        if not is_json:
            raise ExtractionFailed(
                f"{at} answered with a body that is not JSON, so response_extract "
                f"{worker.response_extract!r} cannot apply: {response.snippet(secrets=worker.secret_values())}"
            )
        try:
            result = extract_answer(worker, document)
        except PathMismatch as exc:
            raise ExtractionFailed(f"{at}: {exc}", path=exc.path, failed_at=exc.at) from None
        return Completed(result=result, upstream_seconds=response.seconds, usage=usage)

    def complete(self, *, worker: "Worker", prompt: str, temperature: float | None, timeout: float) -> Completed:
        return self.call(
            worker=worker,
            messages=[{"role": "user", "content": prompt}],
            temperature=temperature,
            max_tokens=None,
            timeout=timeout,
        )


def _chunks(model: str, answers: list[Completed], usage: dict | None, *, include_usage: bool) -> list[bytes]:
    """Whole answers as a chat.completion.chunk stream: per choice the role, the content, the
    finish; then the usage when asked for (null when usage_extract cannot say), and [DONE]."""
    chunks = ChatChunks(model)
    events = []
    for index, answer in enumerate(answers):
        events += [
            chunks.delta({"role": "assistant", "content": ""}, index=index),
            chunks.delta({"content": openai_api.answer_text(answer.result)}, index=index),
            chunks.delta({}, index=index, finish_reason="stop"),
        ]
    if include_usage:
        events.append(chunks.usage(usage))
    return [*events, DONE_EVENT]
