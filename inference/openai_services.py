"""The /v1 request path: choose a worker, call it the way its kind wants, fail over, answer.

``openai`` workers are sent the client's request as it came, with only ``model`` replaced by
the worker's upstream model; their answer (a JSON body or an event stream) is passed back as
it came. ``template`` workers are sent their body template filled from the chat, and their
extracted answer is wrapped in a ``chat.completion`` or a stream of chunks.

A failed attempt (unreachable, timed out, 5xx, 429, or a stream that broke before its first
event) moves the request to the next worker; once the first byte of a stream has gone to the
client, it does not.
"""

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING


from inference import openai_api, upstream
from inference.attempts import VERDICTS, Outcome
from inference.exceptions import ModelCannotServe, UpstreamFailed, UpstreamTimeout, UpstreamUnreachable
from inference.services import Lease, RetryableWorkerError, raise_if_worker_failed, routed_call, worker_call
from inference.streaming import StreamDeadlines, UpstreamEventStream, relay

if TYPE_CHECKING:
    from registry.models import Worker

logger = logging.getLogger("mmm.openai")

JSON = "application/json"
EVENT_STREAM = "text/event-stream; charset=utf-8"


class NotServedByTemplateWorkers(ModelCannotServe):
    def __init__(self, model_name: str, endpoint: str):
        super().__init__(
            f"model {model_name!r} is served only by template workers, which answer /v1/chat/completions; "
            f"{endpoint} needs an openai worker",
            model_name=model_name,
        )


@dataclass(frozen=True)
class Answer:
    """What goes back to the client: a whole body, or a stream of bytes to relay."""

    status: int
    content_type: str
    body: bytes = b""
    stream: Iterator[bytes] | None = None
    outcome: str = Outcome.OK  # of a whole body; a stream reports its own when it ends
    # For the request log (console.completion_log reads them): who answered, after how many tries.
    worker: "Worker | None" = None
    attempts: int = 0

    @property
    def error_code(self) -> str:
        return "upstream_rejected" if self.outcome == Outcome.REJECTED else ""

    @property
    def usage(self) -> dict | None:
        """The token counts an OpenAI-shaped JSON answer reports, if it does."""
        if self.stream is not None or not self.body.startswith(b"{"):
            return None
        try:
            usage = json.loads(self.body).get("usage")
        except ValueError:
            return None
        return usage if isinstance(usage, dict) else None


def chat_completion_answer(
    *,
    model_name: str,
    body: dict,
    messages: list[dict],
    stream: bool,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> Answer:
    """Answer one /v1/chat/completions request (``body`` is the client's whole request)."""

    def attempt(worker: "Worker", lease: Lease) -> Answer:
        if worker.is_openai:
            return _openai_attempt(worker, lease, path="/chat/completions", body=body, stream=stream)
        result, _seconds = worker_call(
            worker=worker, prompt="", temperature=temperature, messages=messages, max_tokens=max_tokens,
            timeout=lease.timeout,
        )
        content = openai_api.answer_text(result)
        if stream:
            events = openai_api.chat_completion_events(model=model_name, content=content)
            return Answer(status=200, content_type=EVENT_STREAM, stream=iter(events))
        return Answer(status=200, content_type=JSON, body=openai_api.json_bytes(openai_api.chat_completion(model=model_name, content=content)))

    return _answer_with_failover(model_name=model_name, attempt=attempt)


def openai_passthrough_answer(*, model_name: str, endpoint: str, body: dict, stream: bool = False) -> Answer:
    """Answer a request to an endpoint only openai workers serve (/v1/embeddings, ...)."""
    return _answer_with_failover(
        model_name=model_name,
        attempt=lambda worker, lease: _openai_attempt(worker, lease, path=endpoint, body=body, stream=stream),
        accept=lambda worker: worker.is_openai,
        refuse=lambda name: NotServedByTemplateWorkers(name, f"/v1{endpoint}"),
    )


def _answer_with_failover(
    *,
    model_name: str,
    attempt: Callable[["Worker", Lease], Answer],
    accept: Callable[["Worker"], bool] | None = None,
    refuse: Callable[[str], Exception] | None = None,
) -> Answer:
    """The routing of the seed endpoint (policy, retries, ejection, fallbacks) for /v1 answers."""

    def call(worker: "Worker", lease: Lease) -> Answer:
        answer = attempt(worker, lease)
        if answer.outcome != Outcome.OK:
            lease.settle(VERDICTS[answer.outcome])  # refused by the upstream: the request's fault
        return answer

    routed = routed_call(model_name=model_name, call=call, accept=accept, refuse=refuse)
    answer = dataclasses.replace(routed.value, worker=routed.worker, attempts=routed.attempts)
    logger.info("model=%s answered_by_model=%s worker=%s attempts=%d status=%d stream=%s",
                model_name, routed.model_name, routed.worker.pk, routed.attempts, answer.status, answer.stream is not None)
    return answer


def _openai_attempt(worker: "Worker", lease: Lease, *, path: str, body: dict, stream: bool) -> Answer:
    request = upstream.UpstreamRequest(
        method="POST",
        url=worker.openai_url(path),
        headers=dict(worker.headers or {}),
        json_body={**body, "model": worker.sent_model_name},
    )
    where = f"worker {worker.id} ({upstream.redact_url(request.url)})"
    if not stream:
        try:
            response = upstream.send(request, timeout=lease.timeout)
        except upstream.UpstreamError as exc:
            raise _classified(exc, where) from None
        return _whole_answer(worker, response, where)

    deadlines = StreamDeadlines.starting_now(read_timeout=lease.timeout)
    try:
        events = UpstreamEventStream.open(request, deadlines=deadlines)
    except upstream.UpstreamError as exc:
        raise _classified(exc, where) from None
    try:
        if not (200 <= events.status < 300 and events.is_event_stream):
            try:
                whole = events.read_whole()
            finally:
                events.close()
            return _whole_answer(worker, whole, where)
        # Read ahead to the first event: until it has gone to the client, another worker may
        # still take over.
        first_events = events.next_events()
    except upstream.UpstreamError as exc:
        events.close()
        raise _classified(exc, where) from None
    except BaseException:
        events.close()
        raise
    lease.answer_began()
    lease.keep(for_seconds=deadlines.seconds_left())  # the stream settles it when it ends
    return Answer(status=200, content_type=EVENT_STREAM, stream=_StreamRelay(lease, events, first_events))


def _whole_answer(worker: "Worker", response: upstream.UpstreamResponse, where: str) -> Answer:
    secrets = worker.secret_values()
    raise_if_worker_failed(response, where=where, snippet=response.snippet(secrets=secrets))
    if 200 <= response.status < 300:
        return Answer(status=response.status, content_type=response.content_type or JSON, body=response.content)
    # The request itself was refused (400 for a bad parameter, 404 for an unknown upstream
    # model, ...): the client gets the upstream's status and error, with the worker's keys masked.
    is_json, document = response.json_or_text()
    if is_json and isinstance(document, dict) and "error" in document:
        body = upstream.mask_secrets(response.content.decode("utf-8", errors="replace"), secrets=secrets).encode()
    else:
        body = openai_api.json_bytes(openai_api.error_body(
            message=f"{where} refused the request with HTTP {response.status}: {response.snippet(secrets=secrets)}",
            code="upstream_rejected",
            status=response.status,
        ))
    return Answer(status=response.status, content_type=JSON, body=body, outcome=Outcome.REJECTED)


def _classified(exc: upstream.UpstreamError, where: str) -> Exception:
    """An outbound failure as the error the request path raises (retryable unless too large)."""
    if isinstance(exc, upstream.UpstreamTooLarge):
        return UpstreamFailed(f"{where}: {exc}")
    if isinstance(exc, upstream.UpstreamTimedOut):
        return RetryableWorkerError(UpstreamTimeout(f"{where}: {exc}"))
    return RetryableWorkerError(UpstreamUnreachable(f"{where}: {exc}"))


class _StreamRelay:
    """The relay of one upstream stream as the response's iterable.

    The WSGI server calls ``close()`` when the response is done or the client has gone; if
    that happens before the first chunk was asked for, the generator never ran (closing an
    unstarted generator skips its ``finally``), so the upstream is closed and the attempt
    settled here instead.
    """

    def __init__(self, lease: Lease, events: UpstreamEventStream, first_events: list[bytes]):
        self._lease = lease
        self._worker = lease.worker
        self._events = events
        self._started_at = time.monotonic()
        self._chunks = relay(events, first_events=first_events, on_end=self._settle)
        self._began = False
        self._settled = False
        self._observers: list = []

    def on_end(self, observer) -> None:
        """Call ``observer(outcome=..., error=...)`` when the stream ends (the request log's)."""
        self._observers.append(observer)

    def __iter__(self) -> "_StreamRelay":
        return self

    def __next__(self) -> bytes:
        self._began = True
        return next(self._chunks)

    def close(self) -> None:
        if self._began:
            self._chunks.close()
        elif not self._settled:
            self._events.close()
            self._settle(Outcome.CLIENT_GONE, "")

    def _settle(self, outcome: str, error: str) -> None:
        self._settled = True
        if outcome in (Outcome.FAILED, Outcome.INTERRUPTED):
            logger.warning("model=%s worker=%s stream %s: %s", self._worker.model_name, self._worker.pk, outcome, error)
        self._lease.settle(VERDICTS[outcome], error)
        for observer in self._observers:
            observer(outcome=outcome, error=error)
        logger.info("model=%s worker=%s stream ended: %s after %.1f s",
                    self._worker.model_name, self._worker.pk, outcome, time.monotonic() - self._started_at)
