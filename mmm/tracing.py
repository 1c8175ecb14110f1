"""OpenTelemetry traces, off unless the standard OTEL_* variables ask for them (docs/tracing.md).

On: a span per client request (opentelemetry-instrumentation-django, which also takes the
client's W3C ``traceparent``), a span per upstream attempt (``upstream_attempt``, called once
by the routing code) around the HTTP client span of the upstream call (``http_client_span``,
which passes ``traceparent`` on to the upstream, as opentelemetry-instrumentation-requests did
when the gateway called upstreams through requests), GenAI semantic-convention attributes, and
export over OTLP http/protobuf by a BatchSpanProcessor.

No prompt text and no secret leaves in a span: the upstream URL is recorded as the worker's
URL template with query values masked (a rendered URL may carry the prompt or a key), and URLs
are cut out of exception messages. Off, every function here is a test of one boolean.
"""

import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.models import Worker

logger = logging.getLogger("mmm.tracing")

_enabled = False
_tracer = None
# The worker of the attempt running in this greenlet: the HTTP client span names its URL template.
_attempt_worker: ContextVar["Worker | None"] = ContextVar("mmm_attempt_worker", default=None)
# The model the client asked for: an attempt on another one is a fallback.
_requested_model: ContextVar[str | None] = ContextVar("mmm_requested_model", default=None)


def tracing_wanted(environ=os.environ) -> bool:
    """The standard variables: an OTLP endpoint or an exporter named, and the SDK not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        exporter or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def tracing_start() -> bool:
    """Set up tracing in this process if the environment asks for it; returns whether it is on.

    Called from mmm/wsgi.py in each gunicorn worker, after gevent has patched the standard
    library (the BatchSpanProcessor's thread is then a greenlet) and before Django builds its
    middleware chain (which the Django instrumentation adds to).
    """
    global _enabled, _tracer
    if _enabled or not tracing_wanted():
        return _enabled
    from opentelemetry import trace
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    os.environ.setdefault("OTEL_SERVICE_NAME", "mmm-gateway")
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(BatchSpanProcessor(_Redacting(_exporter())))
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument()
    _tracer = trace.get_tracer("mmm.routing")
    _enabled = True
    logger.info(
        "tracing on: spans go to %s",
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_TRACES_EXPORTER"),
    )
    return True


def _exporter():
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol != "http/protobuf":
        logger.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported; exporting over http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


# --- The request and its attempts ---------------------------------------------------------


def completion_started(*, model_name: str) -> None:
    """The client's request span gets the model asked for (console/completion_log.py calls this)."""
    if not _enabled:
        return
    from opentelemetry import trace

    _requested_model.set(model_name)
    span = trace.get_current_span()
    span.set_attribute("gen_ai.operation.name", "chat")
    span.set_attribute("gen_ai.request.model", model_name)


def completion_finished(*, attempts: int, usage: dict | None, response_model: str | None) -> None:
    """The client's request span gets what answered, after how many attempts, and the tokens."""
    if not _enabled:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    span.set_attribute("mmm.attempts", attempts)
    if response_model:
        span.set_attribute("gen_ai.response.model", response_model)
    for name, value in _usage_attributes(usage).items():
        span.set_attribute(name, value)


def upstream_attempt(
    call: Callable[["Worker", Any], Any], worker: "Worker", lease: Any, *, model_name: str, attempt: int
) -> Any:
    """``call(worker, lease)`` inside a span for this attempt: worker, attempt number, retry,
    fallback, GenAI attributes and the outcome. The routing code's one call into tracing."""
    if not _enabled:
        return call(worker, lease)
    from opentelemetry.trace import SpanKind, Status, StatusCode

    requested = _requested_model.get()
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": _provider(worker),
        "gen_ai.system": _provider(worker),  # the older name of the same attribute
        "gen_ai.request.model": model_name,
        "gen_ai.response.model": worker.sent_model_name,
        "mmm.worker.id": worker.id,
        "mmm.worker.url": _template_url(worker),
        "mmm.attempt": attempt,
        "mmm.retry": attempt > 1,
        "mmm.fallback": requested is not None and requested != model_name,
    }
    if requested is not None and requested != model_name:
        attributes["mmm.fallback_of"] = requested
    token = _attempt_worker.set(worker)
    with _tracer.start_as_current_span(
        f"upstream attempt {model_name}",
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            value = call(worker, lease)
        except Exception as exc:
            error = getattr(exc, "error", exc)  # a RetryableWorkerError wraps the ApiError
            code = getattr(error, "default_code", type(error).__name__)
            retryable = error is not exc
            span.set_attribute("mmm.outcome", "failed, retried elsewhere" if retryable else "failed")
            span.set_attribute("error.type", code)
            span.set_status(Status(StatusCode.ERROR, code))
            raise
        finally:
            _attempt_worker.reset(token)
        span.set_attribute("mmm.outcome", "ok")
        for name, value_ in _usage_attributes(getattr(value, "usage", None)).items():
            span.set_attribute(name, value_)
        return value


@contextmanager
def http_client_span(method: str, url: str, headers: dict[str, str]) -> Iterator[Any]:
    """The HTTP client span of one upstream call (the span opentelemetry-instrumentation-requests
    made, by the same conventions: named by the method, ``http.method``, ``http.url``,
    ``http.status_code``); ``traceparent`` goes into ``headers``. Yields None when tracing is off."""
    if not _enabled:
        yield None
        return
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    worker = _attempt_worker.get()
    attributes = {"http.method": method, "http.url": _template_url(worker) if worker else _display_url(url)}
    with _tracer.start_as_current_span(method, kind=SpanKind.CLIENT, attributes=attributes) as span:
        propagate.inject(headers)
        yield span


def http_client_answered(span: Any, status: int) -> None:
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("http.status_code", status)
    if status >= 400:
        span.set_status(Status(StatusCode.ERROR))


def _display_url(url: str) -> str:
    from inference.redaction import url_for_display

    return url_for_display(url)


def _provider(worker: "Worker") -> str:
    if worker.preset:
        return worker.preset
    # The worker kinds that are APIs of their own name them; a template worker is the gateway's.
    return "mmm.template" if worker.kind == "template" else worker.kind


def _usage_attributes(usage: dict | None) -> dict[str, int]:
    usage = usage if isinstance(usage, dict) else {}
    pairs = (
        ("gen_ai.usage.input_tokens", ("prompt_tokens", "input_tokens")),
        ("gen_ai.usage.output_tokens", ("completion_tokens", "output_tokens")),
    )
    found = {}
    for attribute, names in pairs:
        for name in names:
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                found[attribute] = value
                break
    return found


# --- What never goes out in a span ---------------------------------------------------------

_URL_IN_TEXT = re.compile(r"(https?://[^\s'\"]+|with url: [^\s'\"]+)")


def _template_url(worker: "Worker") -> str:
    from inference.redaction import url_for_display

    return url_for_display(worker.req_url_template)


def _redacted_text(text: str) -> str:
    return _URL_IN_TEXT.sub("<url>", text)


class _Redacting:
    """A span exporter that cuts URLs out of exception events before passing spans on:
    urllib3's messages quote the rendered URL ("Max retries exceeded with url: /q?p=...")."""

    def __init__(self, exporter):
        self._exporter = exporter

    def export(self, spans: Sequence) -> Any:
        return self._exporter.export([_without_urls_in_events(span) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


def _without_urls_in_events(span):
    from opentelemetry.sdk.trace import Event, ReadableSpan

    if not any(event.name == "exception" for event in span.events):
        return span
    events = [
        Event(
            event.name,
            {
                key: _redacted_text(value) if isinstance(value, str) else value
                for key, value in (event.attributes or {}).items()
            },
            event.timestamp,
        )
        if event.name == "exception"
        else event
        for event in span.events
    ]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
