"""The one hook the completion views call: what happened to a completion, for the log and metrics.

    with completion_logged(request, model_name=name) as entry:
        completion = entry.answered(completion_create(...))

The block notes the model, the answering worker, attempts, upstream latency and token usage,
or the error that escaped; RequestContextMiddleware adds the status and total latency the
client saw once the response exists, and sends the finished row to the request log, the
metrics and the request's log line.

What it reads from a completion: its ``record`` (the router's inference.outcomes.AttemptRecord:
the worker that answered, after how many attempts), and, when it has them, ``upstream_seconds``,
``result`` and ``usage`` (a dict with prompt_tokens / completion_tokens / total_tokens). From an
error that escaped: ``status_code`` and the code of an APIException, and its ``attempt`` (the
router's record of the attempts made before it, None when no worker was tried).
"""

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from rest_framework.exceptions import APIException

from console import metrics
from console.models import RequestLog, epoch_minute, latency_class
from inference.outcomes import Outcome
from inference.redaction import redact_url
from mmm import bulk_rows, tracing
from usage import request_hooks

# Where the entry waits on the Django request for the middleware to finish it.
ENTRY_ATTRIBUTE = "mmm_completion_entry"
_MAX_ERROR_CHARS = 1000


@dataclass
class CompletionEntry:
    model_name: str
    stream: bool
    prompt: str
    started_at: Any = field(default_factory=timezone.now)
    started: float = field(default_factory=time.monotonic)
    worker_id: int | None = None
    worker_url: str = ""
    response_model: str = ""  # the model name the answering worker's upstream knows
    answered_by_model: str = ""  # the model of the answering worker: another one on a fallback
    attempts: int = 0
    upstream_ms: float | None = None
    usage: dict | None = None
    answer: Any = None
    error_code: str = ""
    error: str = ""
    client_key_prefix: str = ""
    # A stream has answered 200 before it ends; how it ended is the request's real outcome.
    status_override: int | None = None
    stream_in_progress: Any = None  # the relay of a stream still being read, if there is one
    metered: Any = None  # usage.request_hooks.RequestUsage: its budgets' reservation and tokens

    def answered(self, completion: Any) -> Any:
        """Note what the completion says about itself; returns it (a stream wrapped to be metered)."""
        if self.metered is not None:
            completion = request_hooks.answered(self.metered, completion)
        record = completion.record
        if record is not None:
            self._note_worker(record.worker)
            self.attempts = record.attempts or 1
        seconds = getattr(completion, "upstream_seconds", None)
        self.upstream_ms = None if seconds is None else seconds * 1000
        usage = getattr(completion, "usage", None)
        self.usage = usage if isinstance(usage, dict) else None
        self.answer = getattr(completion, "result", None)
        self.error_code = getattr(completion, "error_code", "") or ""
        stream = getattr(completion, "stream", None)
        if hasattr(stream, "on_end"):
            stream.on_end(self.stream_ended)
            self.stream_in_progress = stream
        return completion

    def stream_ended(self, *, outcome: str, error: str) -> None:
        """How a relayed stream ended: cut off (logged as 502) or the client gone (as 499, as
        nginx does); a stream that ran to its end stays as answered."""
        if outcome == Outcome.INTERRUPTED:
            self.status_override, self.error_code, self.error = 502, "stream_interrupted", error[:_MAX_ERROR_CHARS]
        elif outcome == Outcome.CLIENT_GONE:
            self.status_override, self.error_code = 499, "client_gone"

    def failed(self, exc: BaseException) -> None:
        record = getattr(exc, "attempt", None)  # ApiError declares it; other exceptions have none
        if record is not None:
            self._note_worker(record.worker)
            self.attempts = record.attempts or self.attempts
        if isinstance(exc, APIException):
            codes = exc.get_codes()
            self.error_code = codes if isinstance(codes, str) else exc.default_code
            self.error = str(exc.detail)[:_MAX_ERROR_CHARS]
        else:
            self.error_code = "internal_error"
            self.error = type(exc).__name__

    def _note_worker(self, worker: Any) -> None:
        if worker is not None:
            self.worker_id = worker.pk
            self.worker_url = redact_url(worker.req_url_template)[:2000]
            self.response_model = worker.sent_model_name
            self.answered_by_model = worker.model_name

    def finish(self, *, status: int, request_id: str) -> RequestLog:
        """The row for this request, once the status the client gets is known."""
        latency_ms = (time.monotonic() - self.started) * 1000
        status = self.status_override or status
        keep_content = settings.MMM_REQUEST_LOG_CONTENT
        return bulk_rows.unsaved(
            RequestLog,
            created_at=self.started_at,
            minute=epoch_minute(self.started_at),
            request_id=request_id,
            model_name=self.model_name[:200],
            worker_id=self.worker_id,
            worker_url=self.worker_url,
            client_key_prefix=self.client_key_prefix,
            status=status,
            error_code=self.error_code if status >= 400 else "",
            error=self.error if status >= 400 else "",
            latency_ms=latency_ms,
            latency_class=latency_class(latency_ms),
            upstream_ms=self.upstream_ms,
            attempts=self.attempts,
            prompt_tokens=_tokens(self.usage, "prompt_tokens"),
            completion_tokens=_tokens(self.usage, "completion_tokens"),
            total_tokens=_tokens(self.usage, "total_tokens"),
            stream=self.stream,
            prompt=_without_nul(self.prompt) if keep_content else "",
            answer=_as_text(self.answer) if keep_content and status < 400 else "",
        )


# The inference API: a request refused here before its view ran (no key, bad key, a limit, the
# key store away, a body too large) is still a request a client sent, and is logged as one.
# Invalid input (400) is not: it never was a completion.
_INFERENCE_PREFIXES = ("/api/v1/", "/v1/")
_REFUSALS = frozenset({401, 403, 413, 415, 429, 503})


def refused_entry(request: HttpRequest, response: Any, *, started: float, started_at: Any) -> CompletionEntry | None:
    """The entry of an inference request answered with an error before its view logged it."""
    if response.status_code not in _REFUSALS or not request.path.startswith(_INFERENCE_PREFIXES):
        return None
    from accounts.authentication import presented_key
    from accounts.keys import key_prefix

    entry = CompletionEntry(
        model_name=_model_asked_for(request), stream=False, prompt="", started_at=started_at, started=started
    )
    entry.client_key_prefix = key_prefix(presented_key(request))
    entry.error_code, entry.error = _error_of(response)
    return entry


def _model_asked_for(request: HttpRequest) -> str:
    """The model a refused request named, when its body is small JSON that can still be read
    (a body refused as too large, or already consumed, is not read again)."""
    if request.content_type != "application/json" or request.META.get("CONTENT_LENGTH", "") in ("", "0"):
        return ""
    try:
        if int(request.META["CONTENT_LENGTH"]) > 65536:
            return ""
        body = json.loads(request.body)
    except Exception:
        return ""
    model = body.get("model_name") or body.get("model") if isinstance(body, dict) else None
    return model[:200] if isinstance(model, str) else ""


def _error_of(response: Any) -> tuple[str, str]:
    """The code and message of one of the gateway's JSON error bodies (mmm.api_errors)."""
    if getattr(response, "streaming", False) or "json" not in response.get("Content-Type", ""):
        return f"http_{response.status_code}", ""
    try:
        body = json.loads(response.content)
    except ValueError:
        return f"http_{response.status_code}", ""
    if not isinstance(body, dict):
        return f"http_{response.status_code}", ""
    message = body.get("msg") or body.get("error", {})
    if isinstance(message, dict):  # the OpenAI-shaped error of /v1
        return str(message.get("code") or message.get("type") or f"http_{response.status_code}")[:64], str(
            message.get("message", "")
        )[:_MAX_ERROR_CHARS]
    return str(body.get("code") or f"http_{response.status_code}")[:64], str(message)[:_MAX_ERROR_CHARS]


@contextmanager
def completion_logged(
    request: Any, *, model_name: str, prompt: str = "", stream: bool = False
) -> Iterator[CompletionEntry]:
    """Record the completion made inside the block; see the module's docstring."""
    django_request: HttpRequest = getattr(request, "_request", request)  # DRF wraps Django's
    entry = CompletionEntry(model_name=model_name, stream=stream, prompt=prompt)
    # Which client key asked (its public prefix, never the key).
    entry.client_key_prefix = getattr(getattr(request, "auth", None), "api_key_prefix", None) or ""
    setattr(django_request, ENTRY_ATTRIBUTE, entry)
    counted = metrics.InFlight(model_name=model_name)
    tracing.completion_started(model_name=model_name)
    try:
        # Before any upstream call: a budget with no room refuses the request here.
        entry.metered = request_hooks.reserve(request, model_name=model_name)
        yield entry
    except BaseException as exc:
        entry.failed(exc)
        raise
    finally:
        tracing.completion_finished(attempts=entry.attempts, usage=entry.usage, response_model=entry.response_model)
        if entry.stream_in_progress is not None:
            entry.stream_in_progress.on_end(counted.done)  # a stream is in flight until it ends
        else:
            counted.done()  # also when the client went away or the upstream timed out


def _tokens(usage: dict | None, name: str) -> int | None:
    value = (usage or {}).get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31 else None


def _as_text(answer: Any) -> str:
    if answer is None:
        return ""
    return _without_nul(answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False))


def _without_nul(text: str) -> str:
    return text.replace("\x00", "")  # PostgreSQL refuses NUL in text columns
