"""Every request gets an id and one log line; a completion's also a request-log row and metrics,
and so does an inference request refused before its view (console.completion_log.refused_entry).

The id is the client's X-Request-ID when it is acceptable (mmm.request_id), else a new one;
it is returned in the response's X-Request-ID, sent upstream by inference.upstream, and in the
log line and the request-log row, so one id follows a request through every system it touches.
"""

import json
import logging
import re
import time

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from console import metrics
from console.completion_log import ENTRY_ATTRIBUTE, CompletionEntry, refused_entry
from console.request_log import request_log_writer
from mmm.request_id import HEADER, META_KEY, current_request_id, request_id_from
from usage import request_hooks

logger = logging.getLogger("mmm.request")

# Scraped every few seconds by load balancers and Prometheus: a line each would drown the log.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9._:/@+-]*")


class RequestContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started, started_at = time.monotonic(), timezone.now()
        request_id = request_id_from(request.META.get(META_KEY))  # not request.headers: it parses every header
        request.request_id = request_id
        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response[HEADER] = request_id
        # Refused before the view logged it (keys, limits, body checks): counted all the same, so
        # the log and the metrics show an outage's errors.
        entry = getattr(request, ENTRY_ATTRIBUTE, None) or refused_entry(
            request, response, started=started, started_at=started_at
        )
        # Finished when the server closes the response, once its last byte is sent: the client
        # does not wait for the row, the usage settlement, the metrics and the log line, and a
        # stream's time runs until its last chunk. (Django's test client closes it before it
        # returns, as gunicorn does before it reads the connection's next request.)
        response._resource_closers.append(lambda: self._finish_logged(request, response, entry, started))
        return response

    def _finish_logged(self, request, response, entry, started) -> None:
        # Django's close() swallows whatever a closer raises: say it, or the request's row,
        # usage and metrics would be missing without a word.
        try:
            self._finish(request, response, entry, started)
        except Exception:
            logger.exception("request %s could not be finished (log row, usage, metrics)", request.request_id)

    def _finish(
        self, request: HttpRequest, response: HttpResponse, entry: CompletionEntry | None, started: float
    ) -> None:
        fields = {
            "request_id": request.request_id,
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "ms": round((time.monotonic() - started) * 1000, 1),
        }
        if entry is not None:
            row = entry.finish(status=response.status_code, request_id=request.request_id)
            if entry.metered is not None:
                try:
                    request_hooks.finished(entry.metered, status=response.status_code)
                except Exception:  # the response has gone out; its reservation's lease ends the hold
                    logger.exception("usage of request %s could not be settled", request.request_id)
            request_log_writer.add(row)
            metrics.observe_completion(
                model_name=row.model_name,
                worker_id=row.worker_id,
                status=row.status,
                code=row.error_code,
                seconds=row.latency_ms / 1000,
                upstream_seconds=None if row.upstream_ms is None else row.upstream_ms / 1000,
            )
            fields.update(
                model=row.model_name,
                worker=row.worker_id,
                attempts=row.attempts,
                upstream_ms=None if row.upstream_ms is None else round(row.upstream_ms, 1),
                stream=row.stream,
            )
            if entry.answered_by_model and entry.answered_by_model != row.model_name:
                fields["answered_by_model"] = entry.answered_by_model  # a fallback model answered
            if row.error_code:
                fields["error_code"] = row.error_code
        if request.path in _QUIET_PATHS and entry is None:
            return
        logger.info(_plain(fields), extra={"fields": fields})


def _plain(fields: dict) -> str:
    """key=value pairs; values a client chose (path, model name) are quoted when not plain, so
    they cannot start a forged line."""
    parts = []
    for key, value in fields.items():
        text = "" if value is None else str(value)
        parts.append(f"{key}={text if _PLAIN_VALUE.fullmatch(text) else json.dumps(text)}")
    return " ".join(parts)
