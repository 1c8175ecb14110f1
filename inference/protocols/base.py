"""What every worker kind shares: the interface, the answer it hands back, and the wire.

The neutral request is an OpenAI chat-completions body (a dict: ``messages`` with text and
``image_url`` parts, ``tools``, ``tool_choice``, tool results as ``role: tool`` messages, ``n``,
``stop``, ``max_tokens``/``max_completion_tokens``, ``temperature``, ``top_p``,
``response_format``, ``stream``, ``stream_options``). The neutral answer is a
``chat.completion`` body, and a stream is ``chat.completion.chunk`` events ending with
``data: [DONE]``: every ingress API (/v1/chat/completions, the seed endpoint, and those built on
them) reads these, so each kind translates once, to and from its own API.

A protocol renders a neutral request into its API's request, sends it, parses the whole answer
and turns a stream into neutral events as they arrive. It raises RetryableWorkerError for a
failure another worker may not share (unreachable, timed out, 5xx, 429) and an ApiError for one
it would (the request refused, an answer that cannot be read), and reports how the worker did
through the ``Attempt`` it is given: it never learns how workers are chosen.
"""

import email.utils
import functools
import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from rest_framework import status

from inference import extract, openai_api, redaction, upstream
from inference.exceptions import (
    RetryableWorkerError,
    UpstreamFailed,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from inference.outcomes import AttemptRecord, Outcome
from inference.streaming import (
    DONE_EVENT,
    SSE_OPENAI,
    Framing,
    StreamDeadlines,
    StreamInterrupted,
    StreamTranslator,
    UpstreamEventStream,
    error_event,
    relay,
)
from mmm import json_codec
from mmm.api_errors import ApiError

if TYPE_CHECKING:
    from registry.models import Worker

logger = logging.getLogger("mmm.openai")

JSON = "application/json"
EVENT_STREAM = "text/event-stream; charset=utf-8"


class InvalidChatRequest(ApiError):
    """The chat asks for something this worker's API cannot do, or says it in a way no API
    could read: a 400 naming the field, before anything is sent."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_request"

    def __init__(self, msg: str, *, param: str | None = None):
        super().__init__(msg)
        self.param = param


class Attempt(Protocol):
    """One attempt's hold on a worker, as the router lends it (``inference.router.Lease``)."""

    worker: "Worker"
    timeout: float

    def answer_began(self) -> None: ...

    def keep(self, *, for_seconds: float) -> None: ...

    def settle(self, outcome: Outcome, reason: str = "") -> None: ...


@dataclass(frozen=True)
class Answer:
    """What goes back to the client: a whole body, or a stream of bytes to relay."""

    status: int
    content_type: str
    body: bytes = b""
    stream: Iterator[bytes] | None = None
    outcome: Outcome = Outcome.OK  # of a whole body; a stream reports its own when it ends
    upstream_seconds: float | None = None
    known_usage: dict | None = None  # the usage of a translated answer, already read
    record: AttemptRecord | None = None  # set by the service: who answered, after how many tries

    @property
    def error_code(self) -> str:
        return "upstream_rejected" if self.outcome == Outcome.REJECTED else ""

    @property
    def usage(self) -> dict | None:
        """The token counts an OpenAI-shaped JSON answer reports, if it does."""
        if self.known_usage is not None:
            return self.known_usage
        if self.stream is not None or not self.body.startswith(b"{"):
            return None
        try:
            usage = json_codec.loads(self.body).get("usage")
        except ValueError:
            return None
        return usage if isinstance(usage, dict) else None


@dataclass(frozen=True)
class Completed:
    """A seed-endpoint answer: the extracted result (any JSON), as the seed returns it."""

    result: Any
    upstream_seconds: float
    usage: dict | None = None


class WorkerProtocol(Protocol):
    """One worker kind: how its API is called. ``inference.protocols.protocol_for`` picks it."""

    kind: str

    def serves(self, endpoint: str) -> bool:
        """Whether the /v1 ``endpoint`` (``/chat/completions``, ``/embeddings``, ...) is served."""

    def chat(self, *, worker: "Worker", chat: dict, stream: bool, attempt: Attempt) -> Answer:
        """Answer one neutral chat request: a chat.completion body, or a stream of chunks."""

    def passthrough(self, *, worker: "Worker", endpoint: str, body: dict, stream: bool, attempt: Attempt) -> Answer:
        """Send a /v1 request other than chat as it came (only kinds that speak OpenAI)."""

    def seed_request(self, *, worker: "Worker", prompt: str, temperature: float | None) -> upstream.UpstreamRequest:
        """The upstream request for one seed prompt (also what the admin's trial shows)."""

    def seed_result(self, *, worker: "Worker", response: upstream.UpstreamResponse) -> Completed:
        """The seed's result from the upstream's 2xx answer to ``seed_request``."""

    def complete(self, *, worker: "Worker", prompt: str, temperature: float | None, timeout: float) -> Completed:
        """Answer one seed prompt (the seed endpoint, and the prober's real request)."""


# --- the wire, shared by every kind -----------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def path_steps(path: str) -> tuple:
    """An extract path, parsed once per process (paths were checked when the worker was saved)."""
    return extract.parse_path(path)


def where(worker: "Worker", url: str) -> str:
    return f"worker {worker.id} ({redaction.redact_url(url)})"


def secrets_of(worker: "Worker") -> list[str]:
    """What must be masked wherever an upstream's answer is quoted (see inference.redaction)."""
    return worker.secret_values()


def send_whole(request: upstream.UpstreamRequest, *, worker: "Worker", timeout: float) -> upstream.UpstreamResponse:
    """Send ``request`` and read the whole answer; a failure to get one is retryable, except an
    answer too large to read (another worker would send it too)."""
    try:
        return upstream.send(request, timeout=timeout)
    except upstream.UpstreamError as exc:
        raise classified(exc, where(worker, request.url)) from None


def classified(exc: upstream.UpstreamError, where: str) -> Exception:
    """An outbound failure as the error the request path raises (retryable unless too large)."""
    if isinstance(exc, upstream.UpstreamTooLarge):
        return UpstreamFailed(f"{where}: {exc}")
    if isinstance(exc, upstream.UpstreamTimedOut):
        return RetryableWorkerError(UpstreamTimeout(f"{where}: {exc}"))
    return RetryableWorkerError(UpstreamUnreachable(f"{where}: {exc}"))


def raise_if_worker_failed(response: upstream.UpstreamResponse, *, worker: "Worker", url: str) -> None:
    """Raise RetryableWorkerError for an answer another worker may better: 5xx, or 429 (which
    rests the worker for its Retry-After rather than counting against it)."""
    if response.status != 429 and response.status < 500:
        return  # the common case: no message to build
    snippet = response.snippet(secrets=secrets_of(worker))
    where_ = where(worker, url)
    if response.status == 429:
        rest = retry_after_seconds(response.retry_after)
        error = UpstreamRateLimited(f"{where_} answered HTTP 429: {snippet}", retry_after=rest, upstream_status=429)
        raise RetryableWorkerError(error, cool_down_seconds=rest)
    if response.status >= 500:
        raise RetryableWorkerError(
            UpstreamFailed(f"{where_} answered HTTP {response.status}: {snippet}", upstream_status=response.status)
        )


def retry_after_seconds(value: str | None) -> float:
    """Seconds to rest a worker that answered 429: its Retry-After (seconds or an HTTP date), capped."""
    from django.conf import settings

    seconds = settings.MMM_COOLDOWN_DEFAULT_SECONDS
    if value:
        value = value.strip()
        if value.isdigit():
            seconds = float(value)
        else:
            try:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                pass
    return min(max(seconds, 0.0), settings.MMM_COOLDOWN_MAX_SECONDS)


def error_message(document: Any) -> str | None:
    """The message of an error body in any of the shapes the kinds use: OpenAI's and Anthropic's
    ``{"error": {"message"}}``, Ollama's and TGI's ``{"error": "..."}``."""
    if not isinstance(document, dict):
        return None
    error = document.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    return None


def refused_answer(worker: "Worker", response: upstream.UpstreamResponse, url: str) -> Answer:
    """A 4xx from the upstream as the client's answer: the upstream's status, its message in the
    OpenAI error shape, with the worker's keys masked."""
    secrets = secrets_of(worker)
    is_json, document = response.json_or_text()
    message = error_message(document) if is_json else None
    detail = redaction.mask_secrets(message, secrets=secrets) if message else response.snippet(secrets=secrets)
    body = openai_api.error_body(
        message=f"{where(worker, url)} refused the request with HTTP {response.status}: {detail}",
        code="upstream_rejected",
        status=response.status,
    )
    return Answer(status=response.status, content_type=JSON, body=openai_api.json_bytes(body), outcome=Outcome.REJECTED)


def checked_document(worker: "Worker", response: upstream.UpstreamResponse, url: str) -> Any:
    """The JSON of a 2xx answer (raising for one that failed or is not JSON)."""
    raise_if_worker_failed(response, worker=worker, url=url)
    if not 200 <= response.status < 300:
        raise UpstreamRejected(
            f"{where(worker, url)} refused the request with HTTP {response.status}: "
            f"{response.snippet(secrets=secrets_of(worker))}",
            upstream_status=response.status,
        )
    is_json, document = response.json_or_text()
    if not is_json:
        raise UpstreamFailed(
            f"{where(worker, url)} answered with a body that is not JSON: "
            f"{response.snippet(secrets=secrets_of(worker))}"
        )
    return document


def unreadable(worker: "Worker", url: str, what: str) -> UpstreamFailed:
    return UpstreamFailed(f"{where(worker, url)} answered in a shape its API does not have: {what}")


# --- neutral shapes -------------------------------------------------------------------------


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def chat_completion(*, model: str, choices: list[dict], usage: dict | None) -> dict:
    document = {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        document["usage"] = usage
    return document


def choice(*, index: int, content: str | None, tool_calls: list[dict] | None, finish_reason: str) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "finish_reason": finish_reason, "logprobs": None}


def usage_of(prompt_tokens: Any, completion_tokens: Any) -> dict | None:
    """OpenAI's usage object from two counts, or None when the upstream gave neither."""
    if not isinstance(prompt_tokens, int) and not isinstance(completion_tokens, int):
        return None
    prompt = prompt_tokens if isinstance(prompt_tokens, int) else 0
    completion = completion_tokens if isinstance(completion_tokens, int) else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def added_usage(usages: list[dict | None]) -> dict | None:
    known = [usage for usage in usages if usage]
    if not known:
        return None
    names = ("prompt_tokens", "completion_tokens", "total_tokens")
    return {name: sum(usage.get(name) or 0 for usage in known) for name in names}


def wants_usage(chat: dict) -> bool:
    options = chat.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def choice_count(chat: dict) -> int:
    n = chat.get("n")
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 16:
        raise InvalidChatRequest("n: must be a whole number from 1 to 16", param="n")
    return n


def max_tokens_of(chat: dict) -> int | None:
    value = chat.get("max_completion_tokens") or chat.get("max_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def stop_list(chat: dict) -> list[str] | None:
    stop = chat.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(item, str) for item in stop):
        return stop
    raise InvalidChatRequest("stop: must be a string or a list of strings", param="stop")


def function_tools(chat: dict) -> list[dict]:
    """The chat's tools as OpenAI function definitions, checked."""
    tools = chat.get("tools") or []
    if not isinstance(tools, list):
        raise InvalidChatRequest("tools: must be a list", param="tools")
    functions = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
        ):
            raise InvalidChatRequest(
                f'tools[{index}]: must be {{"type": "function", "function": {{"name": ...}}}}', param="tools"
            )
        functions.append(function)
    return functions


def tool_arguments(call: dict, where_: str) -> Any:
    """An assistant tool call's arguments (a JSON text in OpenAI's shape) as a value."""
    arguments = (call.get("function") or {}).get("arguments") or "{}"
    try:
        return json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        raise InvalidChatRequest(f"{where_}.function.arguments: is not JSON", param="messages") from None


def image_url(part: dict, where_: str) -> str:
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, dict) else url
    if not isinstance(url, str) or not url:
        raise InvalidChatRequest(f"{where_}.image_url.url: is required", param="messages")
    return url


def data_url(url: str, where_: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a ``data:`` URL, or None for any other URL."""
    if not url.startswith("data:"):
        return None
    header, comma, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or encoding != "base64" or not media_type:
        raise InvalidChatRequest(f"{where_}: a data URL must look like data:image/png;base64,...", param="messages")
    return media_type, data


def new_tool_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


# --- shared behaviour of the kinds --------------------------------------------------------


class ChatChunks:
    """Builds one stream's ``chat.completion.chunk`` events (one id and time for all), for the
    choice ``index``; ``for_choice`` gives the builder of another choice of the same stream."""

    def __init__(self, model: str, *, index: int = 0, base: bytes | None = None):
        self.index = index
        self._base = (
            base
            or f'{{"id": "{completion_id()}", "object": "chat.completion.chunk", '
            f'"created": {int(time.time())}, "model": {json.dumps(model)}, '.encode()
        )

    def for_choice(self, index: int) -> "ChatChunks":
        return ChatChunks("", index=index, base=self._base)

    def delta(self, delta: dict, *, index: int | None = None, finish_reason: str | None = None) -> bytes:
        choice = self.index if index is None else index
        choices = [{"index": choice, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
        return self._event({"choices": choices})

    def usage(self, usage: dict | None) -> bytes:
        return self._event({"choices": [], "usage": usage})

    def _event(self, rest: dict) -> bytes:
        return b"data: " + self._base + json.dumps(rest, ensure_ascii=False)[1:].encode() + b"\n\n"


class ChunkTranslator(StreamTranslator):
    """A translator into chunks of one choice. The stream's end (the usage chunk when asked for,
    and [DONE]) is its own unless it is one of several choices relayed in a row (``ends_stream``
    False), whose end the relay of all of them sends."""

    def __init__(self, *, chunks: ChatChunks, include_usage: bool, ends_stream: bool = True):
        self._chunks = chunks
        self._include_usage = include_usage
        self._ends_stream = ends_stream

    def usage(self) -> dict | None:
        """The upstream's token counts for this choice, once its stream has ended."""
        return None

    def finish(self) -> bytes:
        if not self._ends_stream:
            return b""
        return (self._chunks.usage(self.usage()) if self._include_usage else b"") + DONE_EVENT


@dataclass
class Relayed:
    """The relay of one upstream stream as the response's iterable.

    The WSGI server calls ``close()`` when the response is done or the client has gone; if
    that happens before the first chunk was asked for, the generator never ran (closing an
    unstarted generator skips its ``finally``), so the upstream is closed and the attempt
    settled here instead.
    """

    attempt: Attempt
    events: UpstreamEventStream
    first_events: list[bytes]
    translator: StreamTranslator | None = None
    _observers: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self._worker = self.attempt.worker
        self._chunks = relay(
            self.events, first_events=self.first_events, on_end=self._settle, translator=self.translator
        )
        self._began = False
        self._settled = False

    def on_end(self, observer) -> None:
        """Call ``observer(outcome=..., error=...)`` when the stream ends (the request log's)."""
        self._observers.append(observer)

    def __iter__(self) -> "Relayed":
        return self

    def __next__(self) -> bytes:
        self._began = True
        return next(self._chunks)

    def close(self) -> None:
        if self._began:
            self._chunks.close()
        elif not self._settled:
            self.events.close()
            self._settle(Outcome.CLIENT_GONE, "")

    def _settle(self, outcome: Outcome, error: str) -> None:
        self._settled = True
        if outcome in (Outcome.FAILED, Outcome.INTERRUPTED):
            logger.warning(
                "model=%s worker=%s stream %s: %s", self._worker.model_name, self._worker.pk, outcome.value, error
            )
        self.attempt.settle(outcome, error)
        # How it ended is in the request's one line (console.middleware), written once it closes.
        # The observers are let go once told: the request's entry holds this stream, so keeping
        # them would leave the two in a cycle only the garbage collector frees (mmm.api_view).
        observers, self._observers = self._observers, []
        for observer in observers:
            observer(outcome=outcome, error=error)


def open_stream(
    request: upstream.UpstreamRequest,
    *,
    worker: "Worker",
    attempt: Attempt,
    framing: Framing = SSE_OPENAI,
    accept: str = "text/event-stream",
    is_stream=None,
    on_whole=None,
    translator: StreamTranslator | None = None,
) -> Answer:
    """Open an upstream stream and read ahead to its first events: until they have gone to the
    client, another worker may still take over. An answer that is not a stream (an error, or a
    server that ignored the stream flag) is read whole and handed to ``on_whole``."""
    at = where(worker, request.url)
    deadlines = StreamDeadlines.starting_now(read_timeout=attempt.timeout)
    try:
        events = UpstreamEventStream.open(request, deadlines=deadlines, framing=framing, accept=accept)
    except upstream.UpstreamError as exc:
        raise classified(exc, at) from None
    try:
        streaming = is_stream(events) if is_stream else events.is_event_stream
        if not (200 <= events.status < 300 and streaming):
            try:
                whole = events.read_whole()
            finally:
                events.close()
            return on_whole(whole)
        first_events = events.next_events()
    except upstream.UpstreamError as exc:
        events.close()
        raise classified(exc, at) from None
    except BaseException:
        events.close()
        raise
    attempt.answer_began()
    attempt.keep(for_seconds=deadlines.seconds_left())  # the stream settles it when it ends
    relayed = Relayed(attempt=attempt, events=events, first_events=first_events, translator=translator)
    return Answer(status=200, content_type=EVENT_STREAM, stream=relayed)


class _ChoicesAttempt:
    """The attempt of several streams relayed in a row: it settles the real attempt once, when
    the last has ended or one has not ended well, and tells the request log then."""

    def __init__(self, attempt: Attempt, n: int):
        self.attempt, self.worker, self.timeout = attempt, attempt.worker, attempt.timeout
        self.left, self.done, self.failed = n, False, False
        self.observers: list = []

    def answer_began(self) -> None:
        self.attempt.answer_began()

    def keep(self, *, for_seconds: float) -> None:
        self.attempt.keep(for_seconds=for_seconds)

    def settle(self, outcome: Outcome, reason: str = "") -> None:
        if self.done:
            return
        self.left -= 1
        if outcome is Outcome.OK and self.left > 0:
            return
        self.done, self.failed = True, outcome is not Outcome.OK
        self.attempt.settle(outcome, reason)
        observers, self.observers = self.observers, []  # let go once told, as Relayed does
        for observer in observers:
            observer(outcome=outcome, error=reason)


def choices_in_a_row(
    open_choice, *, attempt: Attempt, translators: list, chunks: ChatChunks, include_usage: bool
) -> Answer:
    """``n`` streamed on an API without ``n``: the upstream's streams one after the other, as
    choices 0 to n-1 of one stream (``translators[i]`` writes choice i), the usage added up at
    its end. ``open_choice(index, attempt)`` opens one; only the first may fail over to another
    worker, as only it is opened before the client has anything."""
    shared = _ChoicesAttempt(attempt, len(translators))
    first = open_choice(0, shared)
    if first.stream is None:
        return first  # a whole answer (a refusal): no stream to continue

    def tail() -> bytes:
        usage = added_usage([translator.usage() for translator in translators])
        return (chunks.usage(usage) if include_usage else b"") + DONE_EVENT

    stream = ChoicesInARow(
        first=first.stream,
        open_next=lambda index: open_choice(index, shared),
        n=len(translators),
        tail=tail,
        shared=shared,
    )
    return Answer(status=200, content_type=EVENT_STREAM, stream=stream)


class ChoicesInARow:
    """The response's iterable for ``n`` streams relayed one after the other (see
    choices_in_a_row); a stream that cannot be opened or breaks ends the
    response with the error event, without [DONE]."""

    def __init__(self, *, first: Iterator[bytes], open_next, n: int, tail, shared: _ChoicesAttempt):
        self._current: Iterator[bytes] | None = first
        self._open_next, self._n, self._tail, self._shared = open_next, n, tail, shared
        self._index = 0

    def on_end(self, observer) -> None:
        self._shared.observers.append(observer)

    def __iter__(self) -> "ChoicesInARow":
        return self

    def __next__(self) -> bytes:
        while self._current is not None:
            try:
                return next(self._current)
            except StopIteration:
                pass
            if self._shared.failed or self._index + 1 == self._n:
                self._current = None
                if self._shared.failed:
                    break
                return self._tail()
            self._index += 1
            try:
                answer = self._open_next(self._index)
            except (RetryableWorkerError, ApiError) as exc:
                return self._cut(str(exc))
            if answer.stream is None:
                return self._cut(f"the upstream answered HTTP {answer.status}")
            self._current = answer.stream
        raise StopIteration

    def close(self) -> None:
        if self._current is not None:
            close = getattr(self._current, "close", None)
            if close:
                close()
        self._shared.settle(Outcome.CLIENT_GONE)  # nothing if it has settled already

    def _cut(self, why: str) -> bytes:
        self._current = None
        self._shared.settle(Outcome.INTERRUPTED, why)
        return error_event(message=f"the model's stream was cut off before choice {self._index}: {why}")


def event_document(event: bytes, *, sse: bool = True) -> dict | None:
    """The JSON object of one upstream stream event (an SSE event's data, or an NDJSON line);
    None for one without an object; StreamInterrupted for one that is not JSON."""
    try:
        document = sse_data(event) if sse else json.loads(event)
    except ValueError:
        raise StreamInterrupted("the upstream sent an event whose data is not JSON") from None
    return document if isinstance(document, dict) else None


def sse_data(event: bytes) -> Any:
    """The JSON of one server-sent event's data lines (None for an event without data)."""
    lines = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    return json.loads(b"\n".join(lines))


class TranslatingProtocol:
    """A kind whose API is not OpenAI's: the request is rendered, the answer parsed and the
    stream translated by the subclass; sending, failing over, ``n`` and the seed are here.

    ``n`` on an API without it is that many upstream calls, one after the other, whose
    choices are numbered in order and whose usage is added up; streamed, their streams are
    relayed one after the other as the choices of one stream.
    """

    kind = ""
    path = ""  # appended to the worker's base URL
    framing: Framing = SSE_OPENAI
    accept = "text/event-stream"

    def serves(self, endpoint: str) -> bool:
        return endpoint == "/chat/completions"

    # The subclass's part.
    def render(self, *, worker: "Worker", chat: dict, stream: bool) -> upstream.UpstreamRequest:
        raise NotImplementedError

    def parse(self, *, worker: "Worker", document: Any, url: str) -> tuple[dict, dict | None]:
        """(one choice with index 0, usage) from the upstream's whole answer."""
        raise NotImplementedError

    def translator(self, *, chunks: ChatChunks, include_usage: bool, ends_stream: bool = True) -> StreamTranslator:
        raise NotImplementedError

    def is_stream(self, events: UpstreamEventStream) -> bool:
        return events.is_event_stream

    # Shared.
    def url(self, worker: "Worker") -> str:
        base, question, query = worker.req_url_template.partition("?")
        return base.rstrip("/") + self.path + question + query

    def chat(self, *, worker: "Worker", chat: dict, stream: bool, attempt: Attempt) -> Answer:
        n = choice_count(chat)
        model = chat.get("model") or worker.model_name
        if stream:
            request = self.render(worker=worker, chat=chat, stream=True)
            chunks, include_usage = ChatChunks(model), wants_usage(chat)
            if n == 1:
                translator = self.translator(chunks=chunks, include_usage=include_usage)
                return self._open(request, worker=worker, attempt=attempt, model=model, translator=translator)
            translators = [
                self.translator(chunks=chunks.for_choice(index), include_usage=False, ends_stream=False)
                for index in range(n)
            ]
            return choices_in_a_row(
                lambda index, shared: self._open(
                    request, worker=worker, attempt=shared, model=model, translator=translators[index]
                ),
                attempt=attempt,
                translators=translators,
                chunks=chunks,
                include_usage=include_usage,
            )
        request = self.render(worker=worker, chat=chat, stream=False)
        responses = []
        for _ in range(n):
            response = send_whole(request, worker=worker, timeout=attempt.timeout)
            if not 200 <= response.status < 300:
                return self._whole_answer(worker, [response], request.url, model)
            responses.append(response)
        return self._whole_answer(worker, responses, request.url, model)

    def _open(
        self,
        request: upstream.UpstreamRequest,
        *,
        worker: "Worker",
        attempt: Attempt,
        model: str,
        translator: StreamTranslator,
    ) -> Answer:
        return open_stream(
            request,
            worker=worker,
            attempt=attempt,
            framing=self.framing,
            accept=self.accept,
            is_stream=self.is_stream,
            translator=translator,
            on_whole=lambda whole: self._whole_answer(worker, [whole], request.url, model),
        )

    def _whole_answer(self, worker: "Worker", responses: list, url: str, model: str) -> Answer:
        choices, usages = [], []
        for index, response in enumerate(responses):
            raise_if_worker_failed(response, worker=worker, url=url)
            if not 200 <= response.status < 300:
                return refused_answer(worker, response, url)
            is_json, document = response.json_or_text()
            if not is_json:
                raise unreadable(worker, url, "the body is not JSON")
            one, usage = self.parse(worker=worker, document=document, url=url)
            choices.append({**one, "index": index})
            usages.append(usage)
        usage = added_usage(usages)
        body = chat_completion(model=model, choices=choices, usage=usage)
        return Answer(
            status=200,
            content_type=JSON,
            body=openai_api.json_bytes(body),
            known_usage=usage,
            upstream_seconds=sum(response.seconds for response in responses),
        )

    def passthrough(self, *, worker: "Worker", endpoint: str, body: dict, stream: bool, attempt: Attempt) -> Answer:
        raise InvalidChatRequest(f"{self.kind} workers answer /v1/chat/completions only, not /v1{endpoint}")

    def seed_request(self, *, worker: "Worker", prompt: str, temperature: float | None) -> upstream.UpstreamRequest:
        chat: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}]}
        if temperature is not None:
            chat["temperature"] = temperature
        return self.render(worker=worker, chat=chat, stream=False)

    def seed_result(self, *, worker: "Worker", response: upstream.UpstreamResponse) -> Completed:
        url = self.url(worker)
        document = checked_document(worker, response, url)
        one, usage = self.parse(worker=worker, document=document, url=url)
        return Completed(result=one["message"]["content"] or "", upstream_seconds=response.seconds, usage=usage)

    def complete(self, *, worker: "Worker", prompt: str, temperature: float | None, timeout: float) -> Completed:
        request = self.seed_request(worker=worker, prompt=prompt, temperature=temperature)
        return self.seed_result(worker=worker, response=send_whole(request, worker=worker, timeout=timeout))
